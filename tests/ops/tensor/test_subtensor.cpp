// Basic indexing: subtensor, inc_subtensor, set_subtensor.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "convgraph/ops/tensor/alloc.hpp"
#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/shape.hpp"
#include "convgraph/ops/tensor/subtensor.hpp"
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

Tensor iota(DType dtype, const Shape& dims) {
  std::vector<double> v(static_cast<std::size_t>(shape_numel(dims)));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i);
  return Tensor::from_vector<double>(v, dims).cast(dtype);
}

Tensor perform_of(const Variable& out, const std::vector<Tensor>& inputs) {
  std::vector<Tensor> outputs(1);
  out.owner()->op->perform(inputs, outputs);
  return outputs[0];
}

using Bound = std::optional<Dim>;
const Bound kNone = std::nullopt;
const StaticDim kUnknown = std::nullopt;

IndexItem sl(Bound start, Bound stop, Bound step = std::nullopt) {
  return IndexItem::slice(std::move(start), std::move(stop), std::move(step));
}

struct SliceCase {
  IndexItem item;
  std::vector<double> expected;  // elements of iota(7), written out by hand
};

}  // namespace

TEST_CASE("subtensor slices follow Python's rules", "[shape]") {
  // Every row worked out by hand from Python's list slicing of [0, 1, 2, 3, 4, 5, 6].
  const std::vector<SliceCase> cases = {
      {sl(Dim(1), Dim(-1), Dim(2)), {1, 3, 5}},
      {sl(kNone, kNone, Dim(-1)), {6, 5, 4, 3, 2, 1, 0}},
      {sl(Dim(-2), kNone), {5, 6}},
      {sl(Dim(5), Dim(1), Dim(-2)), {5, 3}},
      {sl(Dim(10), kNone), {}},
      {sl(Dim(-10), Dim(2)), {0, 1}},
      {sl(kNone, Dim(-10)), {}},
      {sl(kNone, kNone, Dim(-3)), {6, 3, 0}},
      {sl(Dim(3), Dim(3)), {}},
      {sl(Dim(4), Dim(2)), {}},
      {sl(Dim(-1), Dim(-8), Dim(-1)), {6, 5, 4, 3, 2, 1, 0}},
      {sl(Dim(100), Dim(-100), Dim(-3)), {6, 3, 0}},
      {sl(Dim(2), Dim(100), Dim(4)), {2, 6}},
      {sl(Dim(-3), Dim(-1)), {4, 5}},
      {sl(Dim(-3), Dim(6)), {4, 5}},
      {sl(kNone, Dim(3)), {0, 1, 2}},
  };
  for (DType dtype : {DType::float32, DType::float64, DType::int32}) {
    const Variable x = tensor("x", dtype, {7});
    const Variable u = tensor("u", dtype, {kUnknown});
    const Tensor value = iota(dtype, {7});
    for (std::size_t c = 0; c < cases.size(); ++c) {
      INFO(dtype_name(dtype) << " case " << c);
      const Variable y = subtensor(x, {cases[c].item});
      INFO(y.owner()->op->str());
      REQUIRE(y.type().dims[0].has_value());
      CHECK(*y.type().dims[0] == static_cast<std::int64_t>(cases[c].expected.size()));
      const Tensor out = eval(y, {x}, {value});
      CHECK(out.dtype() == dtype);
      CHECK(out.to_vector<double>() == cases[c].expected);
      // Same through the symbolic length (unknown input dim).
      const Variable v = subtensor(u, {cases[c].item});
      const auto results = run_graph({u}, {v, shape_vector(symbolic_shape(v))}, {value});
      CHECK(results[0].to_vector<double>() == cases[c].expected);
      CHECK(results[1].to_vector<std::int64_t>() ==
            std::vector<std::int64_t>{static_cast<std::int64_t>(cases[c].expected.size())});
    }
  }
}

TEST_CASE("subtensor mixes indices and slices on several axes", "[shape]") {
  for (DType dtype : {DType::float32, DType::float64, DType::int8}) {
    INFO(dtype_name(dtype));
    const Variable x = tensor("x", dtype, {3, 4, 5});
    const Variable y =
        subtensor(x, {IndexItem::index(Dim(-2)), sl(kNone, kNone, Dim(-2)), sl(Dim(1), Dim(4))});
    CHECK(y.type() == TensorType(dtype, {2, 3}));
    CHECK(y.owner()->op->str() == "Subtensor{-2, ::-2, 1:4}");
    const Tensor value = random_tensor(dtype, {3, 4, 5}, 3, -100, 100);
    const auto in = value.to_vector<double>();
    std::vector<double> expected;
    for (int j = 3; j >= 0; j -= 2) {
      for (int k = 1; k < 4; ++k) expected.push_back(in[static_cast<std::size_t>(20 + j * 5 + k)]);
    }
    CHECK(eval(y, {x}, {value}).to_vector<double>() == expected);
    // A view of the input.
    CHECK(perform_of(y, {value}).shares_storage_with(value));
  }
  // Trailing axes are kept whole; a single index gives the row.
  const Variable m = tensor("m", DType::float32, {3, 4});
  const Tensor mv = iota(DType::float32, {3, 4});
  CHECK(eval(subtensor(m, {IndexItem::index(Dim(2))}), {m}, {mv}).to_vector<double>() ==
        std::vector<double>{8, 9, 10, 11});
  CHECK(eval(subtensor(m, {IndexItem::index(Dim(1)), IndexItem::index(Dim(-1))}), {m}, {mv})
            .item<double>() == 7);
  CHECK(subtensor(m, {}) == m);

  // Static dims where bounds and dims are constant, symbolic ones otherwise.
  const Variable u = tensor("u", DType::float32, {7, kUnknown, kUnknown});
  const Variable w =
      subtensor(u, {sl(Dim(1), Dim(-1), Dim(2)), sl(kNone, kNone, Dim(2)), sl(Dim(-3), kNone)});
  CHECK(w.type() == TensorType(DType::float32, {3, kUnknown, kUnknown}));
  CHECK(shape_expression(symbolic_shape(w)) ==
        "(3, ((Shape_i{1}('u') + 1) // 2), min(3, Shape_i{2}('u')))");
}

TEST_CASE("subtensor with symbolic bounds", "[shape]") {
  const Variable x = tensor("x", DType::float64, {kUnknown});
  const Variable n = scalar("n", DType::int64);
  const Tensor value = iota(DType::float64, {6});
  const Variable from_n = subtensor(x, {sl(Dim(n), kNone)});
  CHECK(from_n.owner()->inputs.size() == 2);
  CHECK(from_n.owner()->op->str() == "Subtensor{$1:}");
  const auto run = [&](const Variable& y, std::int64_t n_value) {
    return eval(y, {x, n}, {value, Tensor::scalar(DType::int64, static_cast<double>(n_value))})
        .to_vector<double>();
  };
  CHECK(run(from_n, 2) == std::vector<double>{2, 3, 4, 5});
  CHECK(run(from_n, -2) == std::vector<double>{4, 5});
  CHECK(run(from_n, 9).empty());
  const Variable by_n = subtensor(x, {sl(kNone, kNone, Dim(n))});
  CHECK(run(by_n, -2) == std::vector<double>{5, 3, 1});
  const Variable at_n = subtensor(x, {IndexItem::index(Dim(n))});
  CHECK(at_n.ndim() == 0);
  CHECK(run(at_n, -1) == std::vector<double>{5});

  const std::string step0 = message_of<ValueError>([&] { run(by_n, 0); });
  CHECK(step0.find("step cannot be zero") != std::string::npos);
  const std::string oob = message_of<ShapeError>([&] { run(at_n, 6); });
  CHECK(oob.find("index 6 is out of bounds for axis 0 with size 6") != std::string::npos);
  CHECK(message_of<ShapeError>([&] { run(at_n, -7); }).find("index -7 is out of bounds") !=
        std::string::npos);
}

TEST_CASE("subtensor errors at build time", "[shape]") {
  const Variable x = tensor("x", DType::float32, {3, kUnknown});
  const std::string oob = message_of<ShapeError>([&] { subtensor(x, {IndexItem::index(Dim(5))}); });
  CHECK(oob.find("index 5 is out of bounds for axis 0 with size 3") != std::string::npos);
  CHECK(message_of<ShapeError>([&] {
          subtensor(x, {IndexItem::index(Dim(-4))});
        }).find("index -4") != std::string::npos);
  // An unknown dim defers the check to run time.
  const Variable late = subtensor(x, {IndexItem::all(), IndexItem::index(Dim(5))});
  CHECK(message_of<ShapeError>([&] {
          eval(late, {x}, {Tensor::zeros(DType::float32, {3, 2})});
        }).find("index 5 is out of bounds for axis 1 with size 2") != std::string::npos);
  CHECK(message_of<ValueError>([&] {
          subtensor(x, {sl(kNone, kNone, Dim(0))});
        }).find("step cannot be zero") != std::string::npos);
  CHECK(message_of<ValueError>([&] {
          subtensor(x, {IndexItem::all(), IndexItem::all(), IndexItem::all()});
        }).find("too many indices") != std::string::npos);
  CHECK(message_of<ValueError>([&] { subtensor(x, {IndexItem::index(Dim())}); }).find("unknown") !=
        std::string::npos);
}

TEST_CASE("inc_subtensor and set_subtensor write into a copy", "[shape]") {
  for (DType dtype : {DType::float32, DType::float64, DType::int32}) {
    INFO(dtype_name(dtype));
    const Variable x = tensor("x", dtype, {4, 5});
    const Variable y = tensor("y", dtype, {2, 5});
    const std::vector<IndexItem> rows = {sl(Dim(1), kNone, Dim(2))};  // rows 1 and 3
    const Variable inc = inc_subtensor(x, rows, y);
    const Variable set = set_subtensor(x, rows, y);
    CHECK(inc.type() == x.type());
    CHECK(inc.owner()->op->str() == "IncSubtensor{1::2}");
    CHECK(set.owner()->op->str() == "SetSubtensor{1::2}");
    const Tensor xv = random_tensor(dtype, {4, 5}, 5, -20, 20);
    const Tensor yv = random_tensor(dtype, {2, 5}, 6, -20, 20);
    const auto xs = xv.to_vector<double>();
    const auto ys = yv.to_vector<double>();
    std::vector<double> want_inc = xs, want_set = xs;
    for (int r = 0; r < 2; ++r) {
      for (int c = 0; c < 5; ++c) {
        const auto dst = static_cast<std::size_t>((1 + 2 * r) * 5 + c);
        want_inc[dst] += ys[static_cast<std::size_t>(r * 5 + c)];
        want_set[dst] = ys[static_cast<std::size_t>(r * 5 + c)];
      }
    }
    // The sum rounded to DTYPE, as the op stores it.
    want_inc = Tensor::from_vector<double>(want_inc, {4, 5}).cast(dtype).to_vector<double>();
    const auto results = run_graph({x, y}, {inc, set}, {xv, yv});
    CHECK(results[0].to_vector<double>() == want_inc);
    CHECK(results[1].to_vector<double>() == want_set);
    // The input is left alone.
    CHECK(xv.to_vector<double>() == xs);
  }

  // Broadcasting y: a scalar, a row of static dim 1, a lower rank; a column written backwards.
  const Variable x = tensor("x", DType::float64, {3, 4});
  const Tensor xv = iota(DType::float64, {3, 4});
  const Variable s = scalar("s", DType::float64);
  const Variable row = tensor("row", DType::float64, {1, 2});
  const Variable vec = tensor("vec", DType::float64, {3});
  const Variable a = set_subtensor(x, {sl(kNone, kNone, Dim(-1)), IndexItem::index(Dim(-1))}, vec);
  const Variable b = inc_subtensor(x, {sl(Dim(1), kNone), sl(Dim(1), Dim(3))}, row);
  const Variable c = inc_subtensor(x, {IndexItem::index(Dim(0))}, s);
  const auto results = run_graph(
      {x, s, row, vec}, {a, b, c},
      {xv, Tensor::scalar(DType::float64, 100), Tensor::from_vector<double>({10, 20}, {1, 2}),
       Tensor::from_vector<double>({7, 8, 9}, {3})});
  CHECK(results[0].to_vector<double>() == std::vector<double>{0, 1, 2, 9, 4, 5, 6, 8, 8, 9, 10, 7});
  CHECK(results[1].to_vector<double>() ==
        std::vector<double>{0, 1, 2, 3, 4, 15, 26, 7, 8, 19, 30, 11});
  CHECK(results[2].to_vector<double>() ==
        std::vector<double>{100, 101, 102, 103, 4, 5, 6, 7, 8, 9, 10, 11});

  // An integer y goes into a float x; a float y into an integer x is refused.
  const Variable iy = scalar("iy", DType::int32);
  CHECK(inc_subtensor(x, {IndexItem::index(Dim(0))}, iy).dtype() == DType::float64);
  const Variable ix = tensor("ix", DType::int32, {3});
  CHECK(message_of<TypeError>([&] {
          inc_subtensor(ix, {IndexItem::index(Dim(0))}, s);
        }).find("cast y explicitly") != std::string::npos);
}

TEST_CASE("inc_subtensor broadcasting errors", "[shape]") {
  const Variable x = tensor("x", DType::float32, {3, 4});
  const Variable bad = tensor("bad", DType::float32, {2, 3});
  const std::string build =
      message_of<ShapeError>([&] { inc_subtensor(x, {sl(Dim(0), Dim(2))}, bad); });
  CHECK(build.find("cannot broadcast y ('bad')") != std::string::npos);
  CHECK(build.find("[2, 4]") != std::string::npos);
  CHECK(message_of<ShapeError>([&] {
          set_subtensor(x, {IndexItem::index(Dim(0))}, tensor("r", DType::float32, {1, 4}));
        }).find("more axes") != std::string::npos);
  // A size-1 axis that y's type does not declare does not stretch at run time.
  const Variable loose = tensor("loose", DType::float32, {kUnknown, 4});
  const Variable z = inc_subtensor(x, {sl(Dim(0), Dim(2))}, loose);
  const std::string run = message_of<ShapeError>([&] {
    eval(z, {x, loose},
         {Tensor::zeros(DType::float32, {3, 4}), Tensor::zeros(DType::float32, {1, 4})});
  });
  CHECK(run.find("cannot broadcast y of shape [1, 4] to the indexed region of shape [2, 4]") !=
        std::string::npos);
  // Matching run-time shapes are fine.
  CHECK(eval(z, {x, loose},
             {Tensor::zeros(DType::float32, {3, 4}), Tensor::full(DType::float32, {2, 4}, 1.0)})
            .to_vector<double>() == std::vector<double>{1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0});
}

TEST_CASE("gradients of subtensor, inc_subtensor and set_subtensor", "[shape]") {
  const Tensor a = random_tensor(DType::float64, {5, 6}, 31);
  verify_grad(
      [](const std::vector<Variable>& in) {
        return subtensor(in[0], {sl(Dim(-4), Dim(-1)), sl(kNone, kNone, Dim(-2))});
      },
      {a});
  verify_grad(
      [](const std::vector<Variable>& in) {
        return subtensor(in[0], {IndexItem::index(Dim(1)), sl(Dim(4), Dim(0), Dim(-2))});
      },
      {a});
  // Overlapping reads add up.
  verify_grad(
      [](const std::vector<Variable>& in) {
        return subtensor(in[0], {sl(Dim(1), Dim(3))}) * subtensor(in[0], {sl(Dim(2), Dim(4))});
      },
      {a});
  const Tensor y = random_tensor(DType::float64, {2, 1}, 32);
  const auto region =
      std::vector<IndexItem>{sl(Dim(1), Dim(4), Dim(2)), sl(Dim(-1), Dim(-4), Dim(-1))};
  verify_grad([&](const std::vector<Variable>& in) { return inc_subtensor(in[0], region, in[1]); },
              {a, random_tensor(DType::float64, {2, 3}, 33)});
  verify_grad([&](const std::vector<Variable>& in) { return set_subtensor(in[0], region, in[1]); },
              {a, random_tensor(DType::float64, {2, 3}, 34)});
  // Broadcast y: its gradient sums over the stretched axis.
  verify_grad([&](const std::vector<Variable>& in) { return inc_subtensor(in[0], region, in[1]); },
              {a, y});
  verify_grad([&](const std::vector<Variable>& in) { return set_subtensor(in[0], region, in[1]); },
              {a, random_tensor(DType::float64, {3}, 35)});
  // Symbolic bounds are disconnected; the gradient wrt x still flows.
  const Variable x = tensor("x", DType::float64, {5, 6});
  const Variable n = scalar("n", DType::int64);
  const Variable cost = sum(subtensor(x, {sl(Dim(n), kNone)}) * 2.0);
  const Tensor gx = eval(grad(cost, x), {x, n}, {a, Tensor::scalar(DType::int64, 3)});
  std::vector<double> expected(30, 0.0);
  for (std::size_t i = 18; i < 30; ++i) expected[i] = 2.0;
  CHECK(gx.to_vector<double>() == expected);
}

TEST_CASE("R-operators of the indexing ops", "[shape]") {
  const Tensor a = random_tensor(DType::float64, {4, 5}, 41);
  const Tensor b = random_tensor(DType::float64, {2, 5}, 42);
  const std::vector<IndexItem> idx = {sl(Dim(3), kNone, Dim(-2))};
  CHECK(check_rop([&](const std::vector<Variable>& in) { return subtensor(in[0], idx); }, {a}) ==
        "");
  CHECK(check_rop([&](const std::vector<Variable>& in) { return inc_subtensor(in[0], idx, in[1]); },
                  {a, b}) == "");
  CHECK(check_rop([&](const std::vector<Variable>& in) { return set_subtensor(in[0], idx, in[1]); },
                  {a, b}) == "");
  // Only x moves: the written region does not.
  CHECK(check_rop(
            [&](const std::vector<Variable>& in) {
              return set_subtensor(in[0], idx, zeros(ShapeDims{2, 5}, DType::float64));
            },
            {a}) == "");
}

TEST_CASE("subtensor ops compare by their index structure", "[shape]") {
  const std::vector<IndexSpec> one = {
      {true, IndexBound::constant(1), IndexBound::absent(), IndexBound::symbolic(1)}};
  const std::vector<IndexSpec> two = {
      {true, IndexBound::constant(1), IndexBound::absent(), IndexBound::constant(2)}};
  CHECK(Subtensor(one).equals(Subtensor(one)));
  CHECK(Subtensor(one).hash() == Subtensor(one).hash());
  CHECK_FALSE(Subtensor(one).equals(Subtensor(two)));
  CHECK(Subtensor(two).str() == "Subtensor{1::2}");
  CHECK_FALSE(IncSubtensor(two, false, {}).equals(IncSubtensor(two, true, {})));
  CHECK_FALSE(IncSubtensor(two, false, {}).equals(IncSubtensor(two, false, {true})));
}
