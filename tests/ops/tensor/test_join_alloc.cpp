// Concatenation, padding, alloc and friends, arange.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "convgraph/ops/tensor/alloc.hpp"
#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/join.hpp"
#include "convgraph/ops/tensor/shape.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::check_rop;
using convgraph::testing::eval;
using convgraph::testing::random_tensor;
using convgraph::testing::run_graph;

namespace {

template <typename E>
std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<nothing thrown>";
}

const StaticDim kUnknown = std::nullopt;
using Pads = std::vector<std::pair<std::int64_t, std::int64_t>>;

// Padding of a rank-3 tensor by plain loops: each output element looks up its source element,
// clamped into range (edge) or replaced by VALUE when outside (constant).
std::vector<double> reference_pad(const Tensor& x, const Pads& pads, PadMode mode, double value) {
  const Shape in = x.shape();
  const auto v = x.to_vector<double>();
  Shape out(3);
  for (std::size_t a = 0; a < 3; ++a) out[a] = in[a] + pads[a].first + pads[a].second;
  std::vector<double> result;
  for (std::int64_t i = 0; i < out[0]; ++i) {
    for (std::int64_t j = 0; j < out[1]; ++j) {
      for (std::int64_t k = 0; k < out[2]; ++k) {
        std::int64_t src[3] = {i - pads[0].first, j - pads[1].first, k - pads[2].first};
        bool inside = true;
        for (std::size_t a = 0; a < 3; ++a) {
          if (src[a] < 0 || src[a] >= in[a]) {
            inside = false;
            src[a] = std::clamp<std::int64_t>(src[a], 0, in[a] - 1);
          }
        }
        if (!inside && mode == PadMode::constant) {
          result.push_back(value);
        } else {
          result.push_back(v[static_cast<std::size_t>((src[0] * in[1] + src[1]) * in[2] + src[2])]);
        }
      }
    }
  }
  return result;
}

}  // namespace

TEST_CASE("concatenate: values and static shapes", "[shape]") {
  for (DType dtype : {DType::float32, DType::float64, DType::int32}) {
    INFO(dtype_name(dtype));
    const Variable a = tensor("a", dtype, {2, 3});
    const Variable b = tensor("b", dtype, {1, 3});
    const Variable c = tensor("c", dtype, {2, 2});
    const Tensor av = random_tensor(dtype, {2, 3}, 1, -9, 9);
    const Tensor bv = random_tensor(dtype, {1, 3}, 2, -9, 9);
    const Tensor cv = random_tensor(dtype, {2, 2}, 3, -9, 9);
    const Variable rows = concatenate({a, b, a}, 0);
    const Variable cols = concatenate({a, c}, -1);
    CHECK(rows.type() == TensorType(dtype, {5, 3}));
    CHECK(cols.type() == TensorType(dtype, {2, 5}));
    CHECK(rows.owner()->op->str() == "Join{0}");
    const auto results = run_graph({a, b, c}, {rows, cols}, {av, bv, cv});
    const auto x = av.to_vector<double>();
    const auto y = bv.to_vector<double>();
    const auto z = cv.to_vector<double>();
    std::vector<double> want_rows = x;
    want_rows.insert(want_rows.end(), y.begin(), y.end());
    want_rows.insert(want_rows.end(), x.begin(), x.end());
    CHECK(results[0].to_vector<double>() == want_rows);
    std::vector<double> want_cols;
    for (std::size_t r = 0; r < 2; ++r) {
      for (std::size_t k = 0; k < 3; ++k) want_cols.push_back(x[r * 3 + k]);
      for (std::size_t k = 0; k < 2; ++k) want_cols.push_back(z[r * 2 + k]);
    }
    CHECK(results[1].to_vector<double>() == want_cols);
  }
  const Variable u = tensor("u", DType::float32, {kUnknown, 3});
  const Variable v = tensor("v", DType::float32, {2, kUnknown});
  const Variable uv = concatenate({u, v}, 0);
  CHECK(uv.type() == TensorType(DType::float32, {kUnknown, 3}));
  CHECK(shape_expression(symbolic_shape(uv)) == "((Shape_i{0}('u') + 2), 3)");
  CHECK(concatenate({v, v}, 0).type() == TensorType(DType::float32, {4, kUnknown}));
  CHECK(eval(uv, {u, v},
             {Tensor::zeros(DType::float32, {4, 3}), Tensor::zeros(DType::float32, {2, 3})})
            .shape() == Shape{6, 3});
  // Every dtype goes through.
  for (DType dtype : kAllDTypes) {
    INFO(dtype_name(dtype));
    const Variable p = tensor("p", dtype, {2});
    const Tensor pv = random_tensor(dtype, {2}, 4, -3, 3);
    const auto values = pv.to_vector<double>();
    CHECK(eval(concatenate({p, p}, 0), {p}, {pv}).to_vector<double>() ==
          std::vector<double>{values[0], values[1], values[0], values[1]});
  }
}

TEST_CASE("concatenate errors", "[shape]") {
  const Variable a = tensor("a", DType::float32, {2, 3});
  CHECK(message_of<TypeError>([&] {
          concatenate({a, tensor("d", DType::float64, {2, 3})}, 0);
        }).find("same dtype") != std::string::npos);
  CHECK(message_of<TypeError>([&] {
          concatenate({a, tensor("r", DType::float32, {2, 3, 1})}, 0);
        }).find("float32[2, 3, 1]") != std::string::npos);
  const std::string build = message_of<ShapeError>([&] {
    concatenate({a, tensor("w", DType::float32, {2, 4})}, 0);
  });
  CHECK(build.find("float32[2, 3]") != std::string::npos);
  CHECK(build.find("float32[2, 4]") != std::string::npos);
  CHECK(build.find("all dims but axis 0 must agree") != std::string::npos);
  CHECK(message_of<ValueError>([&] {
          concatenate({a, a}, 2);
        }).find("out of range") != std::string::npos);
  CHECK(message_of<ValueError>([&] { concatenate({}, 0); }).find("no inputs") != std::string::npos);
  CHECK(message_of<ValueError>([&] {
          concatenate({scalar("s", DType::float32), scalar("t", DType::float32)}, 0);
        }).find("out of range") != std::string::npos);
  const Variable u = tensor("u", DType::float32, {kUnknown, kUnknown});
  const std::string run = message_of<ShapeError>([&] {
    eval(concatenate({a, u}, 0), {a, u},
         {Tensor::zeros(DType::float32, {2, 3}), Tensor::zeros(DType::float32, {2, 4})});
  });
  CHECK(run.find("input 1 has shape [2, 4], but input 0 has shape [2, 3]") != std::string::npos);
}

TEST_CASE("pad: constant and edge values", "[shape]") {
  const Pads pads = {{1, 0}, {2, 1}, {0, 3}};
  for (DType dtype : {DType::float32, DType::float64, DType::int32}) {
    INFO(dtype_name(dtype));
    const Variable x = tensor("x", dtype, {2, 3, 2});
    const Tensor xv = random_tensor(dtype, {2, 3, 2}, 7, -20, 20);
    const Variable c = pad(x, pads, PadMode::constant, 2.5);
    const Variable e = pad(x, pads, PadMode::edge);
    CHECK(c.type() == TensorType(dtype, {3, 6, 5}));
    const double fill = is_integer(dtype) ? 2.0 : 2.5;  // the constant is stored in x's dtype
    const auto results = run_graph({x}, {c, e}, {xv});
    CHECK(results[0].to_vector<double>() == reference_pad(xv, pads, PadMode::constant, fill));
    CHECK(results[1].to_vector<double>() == reference_pad(xv, pads, PadMode::edge, 0));
  }
  // Pads wider than the axis replicate the single border element over and over.
  const Variable y = tensor("y", DType::float64, {1, 2, 1});
  const Pads wide = {{2, 3}, {3, 4}, {1, 1}};
  const Tensor yv = random_tensor(DType::float64, {1, 2, 1}, 8);
  CHECK(eval(pad(y, wide, PadMode::edge), {y}, {yv}).to_vector<double>() ==
        reference_pad(yv, wide, PadMode::edge, 0));
  for (DType dtype : kAllDTypes) {
    INFO(dtype_name(dtype));
    const Variable b = tensor("b", dtype, {1, 2, 1});
    const Tensor bv = random_tensor(dtype, {1, 2, 1}, 9, -3, 3);
    const auto results =
        run_graph({b}, {pad(b, wide, PadMode::edge), pad(b, wide, PadMode::constant, 1.0)}, {bv});
    CHECK(results[0].to_vector<double>() == reference_pad(bv, wide, PadMode::edge, 0));
    CHECK(results[1].to_vector<double>() == reference_pad(bv, wide, PadMode::constant, 1.0));
  }
  const Variable u = tensor("u", DType::float32, {2, kUnknown});
  const Variable pu = pad(u, {{1, 1}, {2, 2}});
  CHECK(pu.type() == TensorType(DType::float32, {4, kUnknown}));
  CHECK(pu.owner()->op->str() == "Pad{constant=0; (1, 1), (2, 2)}");
  CHECK(pad(u, {{1, 1}, {0, 3}}, PadMode::edge).owner()->op->str() == "Pad{edge; (1, 1), (0, 3)}");
  CHECK(shape_expression(symbolic_shape(pu)) == "(4, (Shape_i{1}('u') + 4))");
  CHECK(pad(u, {{0, 0}, {0, 0}}) == u);
}

TEST_CASE("pad errors", "[shape]") {
  const Variable x = tensor("x", DType::float32, {2, kUnknown});
  CHECK(message_of<ValueError>([&] {
          pad(x, {{1, -1}, {0, 0}});
        }).find("non-negative") != std::string::npos);
  CHECK(message_of<ValueError>([&] {
          pad(x, {{1, 1}});
        }).find("1 (before, after) pairs") != std::string::npos);
  const Variable empty = tensor("empty", DType::float32, {0, 2});
  CHECK(message_of<ValueError>([&] {
          pad(empty, {{1, 0}, {0, 0}}, PadMode::edge);
        }).find("edge padding needs an element") != std::string::npos);
  // Constant padding of an empty axis is fine.
  CHECK(pad(empty, {{1, 0}, {0, 0}}).type() == TensorType(DType::float32, {1, 2}));
  const Variable e = pad(x, {{0, 0}, {1, 1}}, PadMode::edge);
  CHECK(message_of<ShapeError>([&] {
          eval(e, {x}, {Tensor::zeros(DType::float32, {2, 0})});
        }).find("axis 1 is empty") != std::string::npos);
}

TEST_CASE("gradients and R-operators of concatenate and pad", "[shape]") {
  const Tensor a = random_tensor(DType::float64, {2, 3}, 11);
  const Tensor b = random_tensor(DType::float64, {1, 3}, 12);
  const Tensor c = random_tensor(DType::float64, {3, 3}, 13);
  verify_grad([](const std::vector<Variable>& in) { return concatenate(in, 0); }, {a, b, c});
  verify_grad(
      [](const std::vector<Variable>& in) {
        return concatenate({in[0], in[1]}, 1);
      },
      {a, random_tensor(DType::float64, {2, 1}, 14)});
  CHECK(check_rop([](const std::vector<Variable>& in) { return concatenate(in, 0); }, {a, b}) ==
        "");

  const Tensor x = random_tensor(DType::float64, {2, 3, 2}, 15);
  const Pads pads = {{1, 0}, {2, 1}, {0, 3}};
  verify_grad(
      [&](const std::vector<Variable>& in) { return pad(in[0], pads, PadMode::constant, 3.0); },
      {x});
  verify_grad([&](const std::vector<Variable>& in) { return pad(in[0], pads, PadMode::edge); },
              {x});
  // Borders wider than the axis, and an axis of one element padded on both sides.
  const Tensor small = random_tensor(DType::float64, {1, 2}, 16);
  const Pads wide = {{2, 1}, {3, 4}};
  verify_grad([&](const std::vector<Variable>& in) { return pad(in[0], wide, PadMode::edge); },
              {small});
  CHECK(
      check_rop(
          [&](const std::vector<Variable>& in) { return pad(in[0], pads, PadMode::constant, 3.0); },
          {x}) == "");
  CHECK(check_rop([&](const std::vector<Variable>& in) { return pad(in[0], wide, PadMode::edge); },
                  {small}) == "");

  // The edge gradient exactly: every output element's gradient lands on its source element.
  const Variable v = tensor("v", DType::float64, {3});
  const Variable weights = tensor("w", DType::float64, {7});
  const Variable cost = sum(pad(v, {{2, 2}}, PadMode::edge) * weights);
  const Tensor g = eval(grad(cost, v), {v, weights},
                        {Tensor::zeros(DType::float64, {3}),
                         Tensor::from_vector<double>({1, 2, 4, 8, 16, 32, 64}, {7})});
  CHECK(g.to_vector<double>() == std::vector<double>{1 + 2 + 4, 8, 16 + 32 + 64});
}

TEST_CASE("alloc, zeros, ones, full and the *_like builders", "[shape]") {
  const Variable value = tensor("value", DType::float64, {3});
  const Variable a = alloc(value, {2, 4, 3});
  CHECK(a.type() == TensorType(DType::float64, {2, 4, 3}));
  CHECK(a.owner()->op->str() == "Alloc");
  const Tensor vv = Tensor::from_vector<double>({1.5, -2, 7}, {3});
  const auto av = eval(a, {value}, {vv}).to_vector<double>();
  REQUIRE(av.size() == 24);
  for (std::size_t i = 0; i < av.size(); ++i) CHECK(av[i] == vv.to_vector<double>()[i % 3]);

  const Variable row = tensor("row", DType::float32, {1, 3});
  const Variable n = scalar("n", DType::int64);
  const Variable b = alloc(row, {Dim(n), 3});
  CHECK(b.type() == TensorType(DType::float32, {kUnknown, 3}));
  CHECK(shape_expression(symbolic_shape(b)) == "('n', 3)");
  const Tensor bv =
      eval(b, {row, n},
           {Tensor::from_vector<float>({1, 2, 3}, {1, 3}), Tensor::scalar(DType::int64, 2)});
  CHECK(bv.shape() == Shape{2, 3});
  CHECK(bv.to_vector<double>() == std::vector<double>{1, 2, 3, 1, 2, 3});

  // A value broadcast along the innermost axes (a mean's gradient over the positions): each run of
  // the output repeats one element.
  const Variable per_plane = tensor("per_plane", DType::float32, {2, 3, 1, 1});
  const Variable planes = alloc(per_plane, {2, 3, 4, 5});
  const Tensor pv = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3, 1, 1});
  const auto planes_v = eval(planes, {per_plane}, {pv}).to_vector<double>();
  REQUIRE(planes_v.size() == 120);
  for (std::size_t i = 0; i < planes_v.size(); ++i) CHECK(planes_v[i] == double(i / 20 + 1));

  for (DType dtype : kAllDTypes) {
    INFO(dtype_name(dtype));
    const Tensor z = eval(zeros({2, 3}, dtype));
    const Tensor o = eval(ones({3}, dtype));
    const Tensor f = eval(full({2}, 1.0, dtype));
    CHECK(z.dtype() == dtype);
    CHECK(z.to_vector<double>() == std::vector<double>(6, 0.0));
    CHECK(o.to_vector<double>() == std::vector<double>(3, 1.0));
    CHECK(f.to_vector<double>() == std::vector<double>(2, 1.0));
  }
  CHECK(eval(full({2}, 2.5, DType::float32)).to_vector<double>() == std::vector<double>{2.5, 2.5});
  CHECK(eval(full({2}, -3, DType::int8)).to_vector<double>() == std::vector<double>{-3, -3});

  const Variable x = tensor("x", DType::float32, {kUnknown, 3});
  const Variable zl = zeros_like(x);
  const Variable ol = ones_like(x);
  const Variable fl = full_like(x, 4.0);
  CHECK(zl.type() == x.type());
  CHECK(ol.type() == x.type());
  const auto results = run_graph({x}, {zl, ol, fl}, {random_tensor(DType::float32, {2, 3}, 1)});
  CHECK(results[0].to_vector<double>() == std::vector<double>(6, 0.0));
  CHECK(results[1].to_vector<double>() == std::vector<double>(6, 1.0));
  CHECK(results[2].to_vector<double>() == std::vector<double>(6, 4.0));
  CHECK(zeros_like(tensor("s", DType::int32, {2, 3})).type() == TensorType(DType::int32, {2, 3}));
}

TEST_CASE("alloc errors", "[shape]") {
  const Variable v = tensor("v", DType::float32, {2, 3});
  CHECK(message_of<ShapeError>([&] { alloc(v, {3}); }).find("more axes") != std::string::npos);
  CHECK(message_of<ShapeError>([&] {
          alloc(v, {4, 2, 4});
        }).find("cannot broadcast") != std::string::npos);
  CHECK(message_of<ValueError>([&] {
          alloc(v, {-1, 2, 3});
        }).find("must be non-negative") != std::string::npos);
  CHECK(message_of<ValueError>([&] {
          alloc(v, {Dim(), 2, 3});
        }).find("unknown") != std::string::npos);
  const Variable n = scalar("n", DType::int64);
  const Variable a = alloc(v, {Dim(n), 2, 3});
  CHECK(
      message_of<ValueError>([&] {
        eval(a, {v, n}, {Tensor::zeros(DType::float32, {2, 3}), Tensor::scalar(DType::int64, -2)});
      }).find("dim 0 is -2") != std::string::npos);
  // A size-1 axis the value's type does not declare does not stretch at run time.
  const Variable loose = tensor("loose", DType::float32, {kUnknown, 3});
  const Variable b = alloc(loose, {4, 3});
  CHECK(message_of<ShapeError>([&] {
          eval(b, {loose}, {Tensor::zeros(DType::float32, {1, 3})});
        }).find("cannot broadcast a value of shape [1, 3] to the shape [4, 3]") !=
        std::string::npos);
  CHECK(eval(b, {loose}, {Tensor::full(DType::float32, {4, 3}, 2.0)}).to_vector<double>() ==
        std::vector<double>(12, 2.0));
}

TEST_CASE("gradients and R-operators of alloc", "[shape]") {
  verify_grad(
      [](const std::vector<Variable>& in) {
        return alloc(in[0], {2, 3});
      },
      {random_tensor(DType::float64, {1, 3}, 21)});
  verify_grad(
      [](const std::vector<Variable>& in) {
        return alloc(in[0], {4, 2, 3});
      },
      {random_tensor(DType::float64, {2, 1}, 22)});
  verify_grad(
      [](const std::vector<Variable>& in) {
        return alloc(in[0], {2, 3});
      },
      {random_tensor(DType::float64, {}, 23)});
  CHECK(check_rop(
            [](const std::vector<Variable>& in) {
              return alloc(in[0], {4, 2, 3});
            },
            {random_tensor(DType::float64, {3}, 24)}) == "");
  // The dims are disconnected.
  const Variable n = scalar("n", DType::int64);
  const Variable value = scalar("value", DType::float64);
  const Variable a = alloc(value, {Dim(n)});
  const std::vector<Variable> g = a.owner()->op->grad(a.owner()->inputs, {a}, {a});
  CHECK(g[0].defined());
  CHECK_FALSE(g[1].defined());
}

TEST_CASE("arange", "[shape]") {
  const auto values = [](const Variable& v) { return eval(v).to_vector<double>(); };
  const Variable a = arange(0, 10, 3, DType::int64);
  CHECK(a.type() == TensorType(DType::int64, {4}));
  CHECK(a.owner()->op->str() == "ARange{int64}");
  CHECK(values(a) == std::vector<double>{0, 3, 6, 9});
  CHECK(values(arange(5, -3, -2, DType::int32)) == std::vector<double>{5, 3, 1, -1});
  CHECK(arange(5, 0, 1, DType::int64).type() == TensorType(DType::int64, {0}));
  CHECK(values(arange(5, 0, 1, DType::int64)).empty());
  CHECK(values(arange(0, 5, 2, DType::float32)) == std::vector<double>{0, 2, 4});
  CHECK(eval(arange(0, 5, 2, DType::float16)).dtype() == DType::float16);
  CHECK(values(arange(-3, 3, 1, DType::int8)) == std::vector<double>{-3, -2, -1, 0, 1, 2});

  // Float bounds, through the op.
  const auto f64 = [](double v) { return make_constant(Tensor::scalar(DType::float64, v)); };
  const Variable fr =
      convgraph::apply(std::make_shared<ARange>(DType::float64), {f64(0.5), f64(2.0), f64(0.5)});
  CHECK(fr.type() == TensorType(DType::float64, {3}));
  CHECK(values(fr) == std::vector<double>{0.5, 1.0, 1.5});

  const Variable n = scalar("n", DType::int64);
  const Variable s = arange(0, Dim(n), 2, DType::float64);
  CHECK(s.type() == TensorType(DType::float64, {kUnknown}));
  CHECK(shape_expression(symbolic_shape(s)) == "(max((('n' + 1) // 2), 0),)");
  const auto with_n = [&](const Variable& v, std::int64_t nv) {
    return eval(v, {n}, {Tensor::scalar(DType::int64, static_cast<double>(nv))});
  };
  CHECK(with_n(s, 7).to_vector<double>() == std::vector<double>{0, 2, 4, 6});
  CHECK(with_n(s, -3).to_vector<double>().empty());
  CHECK(with_n(shape_vector(symbolic_shape(s)), 7).to_vector<std::int64_t>() ==
        std::vector<std::int64_t>{4});

  CHECK(message_of<ValueError>([] { arange(0, 5, 0, DType::int64); }).find("step cannot be zero") !=
        std::string::npos);
  const Variable stepped = arange(0, 5, Dim(n), DType::int64);
  CHECK(message_of<ValueError>([&] { with_n(stepped, 0); }).find("step cannot be zero") !=
        std::string::npos);
  CHECK(with_n(stepped, 2).to_vector<double>() == std::vector<double>{0, 2, 4});
  CHECK(message_of<ValueError>([] { ARange a_bool(DType::boolean); }).find("bool") !=
        std::string::npos);
}
