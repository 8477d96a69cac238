#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "convgraph/ops/tensor/reduce.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::check_rop;
using convgraph::testing::eval;
using convgraph::testing::random_tensor;

namespace {

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// Runs the reference perform() of OUT's node directly on INPUTS (any layout).
Tensor perform_of(const Variable& out, const std::vector<Tensor>& inputs) {
  std::vector<Tensor> outputs(1);
  out.owner()->op->perform(inputs, outputs);
  return outputs[0];
}

// The expected reduction of the rank-3 X over the axes flagged in REDUCED, by plain loops in
// double: {values in row-major keepdims order, keepdims shape}.
std::vector<double> reference(const Tensor& x, ReduceOp op, const std::vector<bool>& reduced) {
  const Shape s = x.shape();
  const auto v = x.to_vector<double>();
  Shape out_shape = s;
  for (int a = 0; a < 3; ++a) {
    if (reduced[static_cast<std::size_t>(a)]) out_shape[static_cast<std::size_t>(a)] = 1;
  }
  const std::int64_t n_out = shape_numel(out_shape);
  double init = 0.0;
  if (op == ReduceOp::prod) init = 1.0;
  if (op == ReduceOp::max) init = -INFINITY;
  if (op == ReduceOp::min) init = INFINITY;
  std::vector<double> acc(static_cast<std::size_t>(n_out), init);
  std::vector<double> count(static_cast<std::size_t>(n_out), 0.0);
  for (std::int64_t i = 0; i < s[0]; ++i) {
    for (std::int64_t j = 0; j < s[1]; ++j) {
      for (std::int64_t k = 0; k < s[2]; ++k) {
        const double value = v[static_cast<std::size_t>((i * s[1] + j) * s[2] + k)];
        const std::int64_t oi = reduced[0] ? 0 : i, oj = reduced[1] ? 0 : j,
                           ok = reduced[2] ? 0 : k;
        const auto o = static_cast<std::size_t>((oi * out_shape[1] + oj) * out_shape[2] + ok);
        switch (op) {
          case ReduceOp::sum:
          case ReduceOp::mean:
            acc[o] += value;
            break;
          case ReduceOp::prod:
            acc[o] *= value;
            break;
          case ReduceOp::max:
            acc[o] = std::max(acc[o], value);
            break;
          case ReduceOp::min:
            acc[o] = std::min(acc[o], value);
            break;
        }
        count[o] += 1.0;
      }
    }
  }
  if (op == ReduceOp::mean) {
    for (std::size_t o = 0; o < acc.size(); ++o) acc[o] /= count[o];
  }
  return acc;
}

const ReduceOp kAllOps[] = {ReduceOp::sum, ReduceOp::prod, ReduceOp::max, ReduceOp::min,
                            ReduceOp::mean};

}  // namespace

TEST_CASE("reduce: every axis combination of a rank-3 tensor matches plain loops", "[reduce]") {
  for (DType dtype : {DType::float64, DType::float32}) {
    // Values in [0.5, 1.5) keep products of 24 elements well conditioned.
    const Tensor a = random_tensor(dtype, {2, 3, 4}, 11, 0.5, 1.5);
    Variable x = tensor3("x", dtype);
    const double tol = dtype == DType::float64 ? 1e-12 : 2e-6;
    for (ReduceOp op : kAllOps) {
      for (int mask = 0; mask < 8; ++mask) {
        std::vector<bool> reduced{(mask & 1) != 0, (mask & 2) != 0, (mask & 4) != 0};
        std::vector<int> axes, negative_axes;
        for (int axis = 2; axis >= 0; --axis) {  // unsorted on purpose
          if (reduced[static_cast<std::size_t>(axis)]) {
            axes.push_back(axis);
            negative_axes.push_back(axis - 3);
          }
        }
        if (mask == 0) reduced = {true, true, true};  // empty axes: every axis
        const auto expected = reference(a, op, reduced);
        for (bool keepdims : {false, true}) {
          for (const auto* ax : {&axes, &negative_axes}) {
            INFO(dtype_name(dtype)
                 << " " << reduce_op_name(op) << " mask " << mask << " keepdims " << keepdims);
            Variable out = reduce(op, x, *ax, keepdims);
            REQUIRE(out.dtype() == dtype);
            Shape want_shape;
            for (int axis = 0; axis < 3; ++axis) {
              if (!reduced[static_cast<std::size_t>(axis)]) {
                want_shape.push_back(a.shape()[static_cast<std::size_t>(axis)]);
              } else if (keepdims) {
                want_shape.push_back(1);
              }
            }
            // Static output dims come from the input's type (unknown here), 1 for kept axes.
            REQUIRE(out.ndim() == static_cast<int>(want_shape.size()));
            const Tensor got = eval(out, {x}, {a});
            REQUIRE(got.shape() == want_shape);
            REQUIRE(got.dtype() == dtype);
            const auto values = got.to_vector<double>();
            REQUIRE(values.size() == expected.size());
            for (std::size_t i = 0; i < values.size(); ++i) {
              REQUIRE(values[i] == Approx(expected[i]).epsilon(tol).margin(tol));
            }
          }
        }
      }
    }
  }
}

TEST_CASE("reduce: non-contiguous inputs", "[reduce]") {
  const Tensor base = random_tensor(DType::float64, {4, 3, 6}, 3, 0.5, 1.5);
  // A permuted view, a strided slice, a reversed slice and a broadcast (stride 0) view.
  const std::vector<Tensor> views = {
      base.permute({2, 0, 1}),
      base.slice(2, 1, 6, 2),
      base.slice(0, 3, -1, -1),
      base.as_strided({5, 3, 6}, {0, 6, 1}, 18),
  };
  for (const Tensor& view : views) {
    const Tensor dense = view.clone();
    Variable x = tensor3("x", DType::float64);
    for (ReduceOp op : kAllOps) {
      for (const std::vector<int>& axes :
           {std::vector<int>{0}, {1}, {2}, {0, 2}, {1, 2}, {0, 1}, {}}) {
        for (bool keepdims : {false, true}) {
          Variable out = reduce(op, x, axes, keepdims);
          const Tensor got = perform_of(out, {view});
          std::vector<bool> reduced(3, axes.empty());
          for (int axis : axes) reduced[static_cast<std::size_t>(axis)] = true;
          const auto expected = reference(dense, op, reduced);
          const auto values = got.to_vector<double>();
          INFO(reduce_op_name(op) << " view " << shape_str(view.shape()));
          REQUIRE(values.size() == expected.size());
          for (std::size_t i = 0; i < values.size(); ++i) {
            REQUIRE(values[i] == Approx(expected[i]).epsilon(1e-12));
          }
        }
      }
    }
  }
}

TEST_CASE("reduce: output dtypes and integer, bool and float16 values", "[reduce]") {
  SECTION("sum and prod of integers and bools accumulate and return int64") {
    Variable x = vector("x", DType::int32);
    const Tensor a = Tensor::from_vector<std::int32_t>({2000000000, 2000000000, -7}, {3});
    Variable s = sum(x);
    REQUIRE(s.dtype() == DType::int64);
    REQUIRE(eval(s, {x}, {a}).item<std::int64_t>() == 3999999993LL);
    Variable p = prod(x);
    REQUIRE(p.dtype() == DType::int64);
    const Tensor small = Tensor::from_vector<std::int32_t>({3, -4, 5}, {3});
    REQUIRE(eval(p, {x}, {small}).item<std::int64_t>() == -60);

    Variable i8 = vector("i8", DType::int8);
    const Tensor b = Tensor::from_vector<std::int8_t>({100, 100, 100}, {3});
    REQUIRE(sum(i8).dtype() == DType::int64);
    REQUIRE(eval(sum(i8), {i8}, {b}).item<std::int64_t>() == 300);
    REQUIRE(eval(prod(i8), {i8}, {b}).item<std::int64_t>() == 1000000);

    Variable flags = matrix("flags", DType::boolean);
    const Tensor c = Tensor::from_vector<bool>({true, false, true, true, true, false}, {2, 3});
    Variable count = sum(flags, {1});
    REQUIRE(count.dtype() == DType::int64);
    REQUIRE(eval(count, {flags}, {c}).to_vector<std::int64_t>() == std::vector<std::int64_t>{2, 2});
    REQUIRE(eval(prod(flags, {0}), {flags}, {c}).to_vector<std::int64_t>() ==
            std::vector<std::int64_t>{1, 0, 0});
  }
  SECTION("max and min keep the dtype") {
    Variable x = matrix("x", DType::int8);
    const Tensor a = Tensor::from_vector<std::int8_t>({-128, 5, 127, -3, 0, 9}, {2, 3});
    REQUIRE(max(x).dtype() == DType::int8);
    REQUIRE(eval(max(x, {1}), {x}, {a}).to_vector<int>() == std::vector<int>{127, 9});
    REQUIRE(eval(min(x, {1}), {x}, {a}).to_vector<int>() == std::vector<int>{-128, -3});
    REQUIRE(eval(max(x, {0}), {x}, {a}).to_vector<int>() == std::vector<int>{-3, 5, 127});
    Variable flags = vector("flags", DType::boolean);
    const Tensor f = Tensor::from_vector<bool>({false, true, false}, {3});
    REQUIRE(max(flags).dtype() == DType::boolean);
    REQUIRE(eval(max(flags), {flags}, {f}).item<bool>());
    REQUIRE_FALSE(eval(min(flags), {flags}, {f}).item<bool>());
  }
  SECTION("mean of integers gives floatX") {
    Variable x = vector("x", DType::int32);
    const Tensor a = Tensor::from_vector<std::int32_t>({1, 2, 4}, {3});
    {
      ScopedFlags flags("floatX=float64");
      Variable m = mean(x);
      REQUIRE(m.dtype() == DType::float64);
      REQUIRE(eval(m, {x}, {a}).item_double() == Approx(7.0 / 3.0).epsilon(1e-15));
    }
    {
      ScopedFlags flags("floatX=float32");
      Variable m = mean(x);
      REQUIRE(m.dtype() == DType::float32);
      REQUIRE(eval(m, {x}, {a}).item<float>() == static_cast<float>(7.0 / 3.0));
    }
  }
  SECTION("float16 accumulates in float32 and returns float16") {
    Variable x = vector("x", DType::float16);
    // A float16 accumulator would stop at 2048, where adding 1 rounds back to 2048.
    const Tensor a = Tensor::full(DType::float16, {4096}, 1.0);
    Variable s = sum(x);
    REQUIRE(s.dtype() == DType::float16);
    REQUIRE(eval(s, {x}, {a}).item_double() == 4096.0);
    REQUIRE(eval(mean(x), {x}, {a}).item_double() == 1.0);
    const Tensor b = Tensor::from_vector<double>({0.5, -2.0, 3.25}, {3}).cast(DType::float16);
    REQUIRE(eval(max(x), {x}, {b}).item_double() == 3.25);
    REQUIRE(eval(prod(x), {x}, {b}).item_double() == -3.25);
  }
  SECTION("float32 sums accumulate in double") {
    Variable x = vector("x", DType::float32);
    const std::int64_t n = 1 << 20;
    const Tensor a = Tensor::full(DType::float32, {n}, 0.1);
    const double exact = static_cast<double>(n) * static_cast<double>(0.1f);
    REQUIRE(eval(sum(x), {x}, {a}).item<float>() == static_cast<float>(exact));
    // Along a non-innermost axis too (elementwise accumulation into the output).
    Variable m = matrix("m", DType::float32);
    const Tensor b = Tensor::full(DType::float32, {n / 4, 4}, 0.1);
    const auto cols = eval(sum(m, {0}), {m}, {b}).to_vector<float>();
    for (float c : cols) REQUIRE(c == static_cast<float>(exact / 4));
  }
}

TEST_CASE("reduce: empty axes, NaN and identities", "[reduce]") {
  Variable x = matrix("x", DType::float64);
  const Tensor empty = Tensor::zeros(DType::float64, {2, 0});
  REQUIRE(eval(sum(x, {1}), {x}, {empty}).to_vector<double>() == std::vector<double>{0, 0});
  REQUIRE(eval(prod(x, {1}), {x}, {empty}).to_vector<double>() == std::vector<double>{1, 1});
  const auto m = eval(mean(x, {1}), {x}, {empty}).to_vector<double>();
  REQUIRE(m.size() == 2);
  REQUIRE(std::isnan(m[0]));
  REQUIRE(std::isnan(m[1]));
  // Reducing the non-empty axis of an empty tensor gives an empty result, without error.
  REQUIRE(eval(max(x, {0}), {x}, {empty}).shape() == Shape{0});

  std::string msg = message_of([&] { eval(max(x, {1}), {x}, {empty}); });
  REQUIRE(msg.find("max over an empty axis 1 of shape [2, 0]: there is no identity") !=
          std::string::npos);
  REQUIRE_THROWS_AS(eval(max(x, {1}), {x}, {empty}), ShapeError);
  REQUIRE_THROWS_AS(eval(min(x), {x}, {empty}), ShapeError);
  msg = message_of([&] { eval(min(x, {-1}, true), {x}, {empty}); });
  REQUIRE(msg.find("min over an empty axis 1") != std::string::npos);

  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor with_nan = Tensor::from_vector<double>({1, nan, 3, 4, 5, 6}, {2, 3});
  const auto mx = eval(max(x, {1}), {x}, {with_nan}).to_vector<double>();
  REQUIRE(std::isnan(mx[0]));
  REQUIRE(mx[1] == 6.0);
  const auto mn = eval(min(x, {1}), {x}, {with_nan}).to_vector<double>();
  REQUIRE(std::isnan(mn[0]));
  REQUIRE(mn[1] == 4.0);
}

TEST_CASE("reduce: bad axes are ValueErrors naming the axis and the rank", "[reduce]") {
  Variable x = tensor3("x", DType::float32);
  std::string msg = message_of([&] { sum(x, {3}); });
  REQUIRE(msg.find("axis 3") != std::string::npos);
  REQUIRE(msg.find("rank 3") != std::string::npos);
  REQUIRE_THROWS_AS(sum(x, {3}), ValueError);
  REQUIRE_THROWS_AS(max(x, {-4}), ValueError);
  msg = message_of([&] { mean(x, {1, -2}); });
  REQUIRE(msg.find("repeated") != std::string::npos);
  REQUIRE(msg.find("rank 3") != std::string::npos);
  REQUIRE_THROWS_AS(prod(x, {0, 0}), ValueError);
  REQUIRE_THROWS_AS(Reduce(ReduceOp::sum, {2, 1}, false), ValueError);
  REQUIRE_THROWS_AS(apply(std::make_shared<Reduce>(ReduceOp::sum, std::vector<int>{3}, false), {x}),
                    ValueError);
  // A scalar reduces over no axis.
  Variable s = scalar("s", DType::float64);
  REQUIRE(sum(s).ndim() == 0);
  REQUIRE(eval(sum(s), {s}, {Tensor::scalar(DType::float64, 2.5)}).item_double() == 2.5);
  REQUIRE_THROWS_AS(sum(s, {0}), ValueError);
}

TEST_CASE("reduce: static output dims, infer_shape and op identity", "[reduce]") {
  Variable x = tensor("x", DType::float32, {2, std::nullopt, 4});
  REQUIRE(sum(x, {1}).type().dims == StaticShape{2, 4});
  REQUIRE(sum(x, {1}, true).type().dims == StaticShape{2, 1, 4});
  REQUIRE(max(x, {0, 2}).type().dims == StaticShape{std::nullopt});
  REQUIRE(mean(x, {}, true).type().dims == StaticShape{1, 1, 1});

  const ShapeDims dims = symbolic_shape(sum(x, {0}, true));
  REQUIRE(dims.size() == 3);
  REQUIRE(dims[0].is_constant());
  REQUIRE(dims[0].value() == 1);
  REQUIRE(dims[1].is_symbolic());
  REQUIRE(dims[2].value() == 4);
  const Tensor a = Tensor::zeros(DType::float32, {2, 5, 4});
  REQUIRE(eval(shape(sum(x, {2})), {x}, {a}).to_vector<std::int64_t>() ==
          std::vector<std::int64_t>{2, 5});

  const Reduce a1(ReduceOp::sum, {0, 2}, false);
  const Reduce a2(ReduceOp::sum, {0, 2}, false);
  const Reduce b1(ReduceOp::sum, {0, 2}, true);
  const Reduce c1(ReduceOp::max, {0, 2}, false);
  REQUIRE(a1.equals(a2));
  REQUIRE(a1.hash() == a2.hash());
  REQUIRE_FALSE(a1.equals(b1));
  REQUIRE_FALSE(a1.equals(c1));
  REQUIRE(a1.str() == "Reduce{sum, axes=[0, 2]}");
  REQUIRE(b1.str() == "Reduce{sum, axes=[0, 2], keepdims}");
}

TEST_CASE("reduce: gradients match finite differences", "[reduce]") {
  const Tensor a = random_tensor(DType::float64, {2, 3, 4}, 5, 0.5, 1.5);
  for (ReduceOp op : kAllOps) {
    for (const std::vector<int>& axes :
         {std::vector<int>{}, {0}, {1}, {-1}, {0, 2}, {1, 2}, {0, 1, 2}}) {
      for (bool keepdims : {false, true}) {
        INFO(reduce_op_name(op) << " keepdims " << keepdims << " axes " << axes.size());
        REQUIRE_NOTHROW(verify_grad(
            [&](const std::vector<Variable>& in) { return reduce(op, in[0], axes, keepdims); },
            {a}));
      }
    }
  }
}

TEST_CASE("reduce: prod gradient is exact with zeros", "[reduce]") {
  Variable x = matrix("x", DType::float64);
  // Row 0: no zero; row 1: one zero; row 2: two zeros.
  const Tensor a = Tensor::from_vector<double>({2, 3, 4, 2, 0, 5, 0, 3, 0}, {3, 3});
  const auto g = eval(grad(sum(prod(x, {1})), x), {x}, {a}).to_vector<double>();
  const std::vector<double> expected{12, 8, 6, 0, 10, 0, 0, 0, 0};
  REQUIRE(g == expected);
  // Finite differences agree (a product is linear in each element, so the zeros are no trap).
  for (const std::vector<int>& axes : {std::vector<int>{1}, {0}, {}}) {
    REQUIRE_NOTHROW(
        verify_grad([&](const std::vector<Variable>& in) { return prod(in[0], axes); }, {a}));
  }
  const Tensor one_zero = Tensor::from_vector<double>({1.5, -2, 0, 0.5}, {4});
  REQUIRE_NOTHROW(
      verify_grad([](const std::vector<Variable>& in) { return prod(in[0]); }, {one_zero}));
  const Tensor two_zeros = Tensor::from_vector<double>({1.5, 0, 0, 0.5}, {4});
  REQUIRE_NOTHROW(
      verify_grad([](const std::vector<Variable>& in) { return prod(in[0]); }, {two_zeros}));
}

TEST_CASE("reduce: max and min give the gradient to every tied element", "[reduce]") {
  Variable x = vector("x", DType::float64);
  const Tensor a = Tensor::from_vector<double>({1, 3, 3, -2}, {4});
  REQUIRE(eval(grad(max(x), x), {x}, {a}).to_vector<double>() == std::vector<double>{0, 1, 1, 0});
  REQUIRE(eval(grad(min(x), x), {x}, {a}).to_vector<double>() == std::vector<double>{0, 0, 0, 1});
  // The mean gradient divides by the count, also when it is only known at run time.
  REQUIRE(eval(grad(mean(x), x), {x}, {a}).to_vector<double>() ==
          std::vector<double>{0.25, 0.25, 0.25, 0.25});
  // Integer inputs are disconnected.
  Variable i = vector("i", DType::int32);
  Variable f = vector("f", DType::float64);
  Variable cost = add(sum(f), cast(sum(i), DType::float64));
  REQUIRE(eval(grad(cost, f), {f, i},
               {Tensor::from_vector<double>({1, 2}, {2}),
                Tensor::from_vector<std::int32_t>({1, 2}, {2})})
              .to_vector<double>() == std::vector<double>{1, 1});
}

TEST_CASE("reduce: R-operator", "[reduce]") {
  const Tensor a = random_tensor(DType::float64, {3, 4}, 9, 0.5, 1.5);
  for (ReduceOp op : kAllOps) {
    for (const std::vector<int>& axes : {std::vector<int>{0}, {1}, {}}) {
      for (bool keepdims : {false, true}) {
        INFO(reduce_op_name(op) << " keepdims " << keepdims);
        const std::string report = check_rop(
            [&](const std::vector<Variable>& in) { return reduce(op, in[0], axes, keepdims); },
            {a});
        INFO(report);
        REQUIRE(report.empty());
      }
    }
  }
  // prod with zeros: the exact derivative, not prod * sum(Rx / x).
  const Tensor zeros = Tensor::from_vector<double>({2, 0, 5, 0, 3, 0, 1, 4, 2}, {3, 3});
  const std::string report =
      check_rop([](const std::vector<Variable>& in) { return prod(in[0], {1}); }, {zeros});
  INFO(report);
  REQUIRE(report.empty());
  // max with ties: the mean of the eval point over the tied elements.
  Variable x = vector("x", DType::float64);
  Variable v = vector("v", DType::float64);
  Variable r = Rop({max(x)}, {x}, {v}).front();
  REQUIRE(eval(r, {x, v},
               {Tensor::from_vector<double>({1, 3, 3}, {3}),
                Tensor::from_vector<double>({10, 2, 5}, {3})})
              .item_double() == 3.5);
}

TEST_CASE("reduce: sum_to sums broadcast axes back to a type", "[reduce]") {
  Variable g = tensor("g", DType::float64, {2, 3, 4});
  const Tensor a = random_tensor(DType::float64, {2, 3, 4}, 1);
  const auto v = a.to_vector<double>();

  Variable s = sum_to(g, TensorType(DType::float64, {3, 1}));
  REQUIRE(s.type().dims == StaticShape{3, 1});
  const auto got = eval(s, {g}, {a}).to_vector<double>();
  for (int j = 0; j < 3; ++j) {
    double expected = 0;
    for (int i = 0; i < 2; ++i) {
      for (int k = 0; k < 4; ++k) expected += v[static_cast<std::size_t>((i * 3 + j) * 4 + k)];
    }
    REQUIRE(got[static_cast<std::size_t>(j)] == Approx(expected).epsilon(1e-12));
  }
  // Same type: nothing to do.
  REQUIRE(sum_to(g, g.type()) == g);
  // Leading axes only, with a cast to the target dtype.
  Variable t = sum_to(g, TensorType(DType::float32, {std::nullopt, 4}));
  REQUIRE(t.dtype() == DType::float32);
  REQUIRE(t.type().dims == StaticShape{3, 4});
  const auto got2 = eval(t, {g}, {a}).to_vector<double>();
  for (int j = 0; j < 12; ++j) {
    const double expected = v[static_cast<std::size_t>(j)] + v[static_cast<std::size_t>(12 + j)];
    REQUIRE(got2[static_cast<std::size_t>(j)] == Approx(expected).epsilon(1e-6));
  }
  // To a scalar.
  REQUIRE(eval(sum_to(g, TensorType(DType::float64, {})), {g}, {a}).item_double() ==
          Approx(std::accumulate(v.begin(), v.end(), 0.0)).epsilon(1e-12));
  REQUIRE_THROWS_AS(sum_to(g, TensorType(DType::float64, {1, 2, 3, 4})), ValueError);
}
