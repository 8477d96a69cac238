// Shape ops, Dim arithmetic, symbolic shapes, reshape, dimshuffle and flip.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/join.hpp"
#include "convgraph/ops/tensor/reduce.hpp"
#include "convgraph/ops/tensor/reshape.hpp"
#include "convgraph/ops/tensor/shape.hpp"
#include "convgraph/ops/tensor/subtensor.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::check_rop;
using convgraph::testing::eval;
using convgraph::testing::random_tensor;

namespace {

// The message of the E that F throws ("<nothing thrown>" if it returns; another exception type
// propagates and fails the test).
template <typename E>
std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<nothing thrown>";
}

// 0, 1, 2, ... in DTYPE.
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

std::vector<std::int64_t> ints(const Tensor& t) {
  return t.to_vector<std::int64_t>();
}

// Row-major flat index of (i, j, k) in a tensor of shape DIMS.
std::size_t at3(const Shape& dims, std::int64_t i, std::int64_t j, std::int64_t k) {
  return static_cast<std::size_t>((i * dims[1] + j) * dims[2] + k);
}

const StaticDim kUnknown = std::nullopt;

}  // namespace

TEST_CASE("shape, shape_i and make_vector: constants when static, ops otherwise", "[shape]") {
  const Variable s = tensor("s", DType::float32, {2, 3});
  REQUIRE(shape(s).is_constant());
  CHECK(ints(shape(s).constant_value()) == std::vector<std::int64_t>{2, 3});
  REQUIRE(shape_i(s, -1).is_constant());
  CHECK(shape_i(s, -1).constant_value().item<std::int64_t>() == 3);

  const Variable x = tensor("x", DType::float32, {kUnknown, 3, kUnknown});
  const Variable sx = shape(x);
  REQUIRE_FALSE(sx.is_constant());
  CHECK(sx.type() == TensorType(DType::int64, {3}));
  CHECK(sx.owner()->op->str() == "Shape");
  CHECK(shape_i(x, 1).is_constant());
  const Variable last = shape_i(x, -1);
  REQUIRE_FALSE(last.is_constant());
  CHECK(last.owner()->op->str() == "Shape_i{2}");
  CHECK(last.type() == TensorType(DType::int64, {}));

  const Tensor value = random_tensor(DType::float32, {2, 3, 5}, 1);
  CHECK(ints(eval(sx, {x}, {value})) == std::vector<std::int64_t>{2, 3, 5});
  CHECK(eval(last, {x}, {value}).item<std::int64_t>() == 5);

  const Variable v = make_vector({shape_i(x, 0), shape_i(x, 1), last});
  CHECK(v.type() == TensorType(DType::int64, {3}));
  CHECK(ints(eval(v, {x}, {value})) == std::vector<std::int64_t>{2, 3, 5});
  const Variable constant_vector = shape_vector({Dim(4), Dim(0)});
  REQUIRE(constant_vector.is_constant());
  CHECK(ints(constant_vector.constant_value()) == std::vector<std::int64_t>{4, 0});
  CHECK(shape_vector({}).type() == TensorType(DType::int64, {0}));

  // The values do not flow through shapes.
  CHECK_FALSE(ShapeOp().grad({x}, {sx}, {sx})[0].defined());
  CHECK_FALSE(ShapeI(2).grad({x}, {last}, {last})[0].defined());

  CHECK(message_of<ValueError>([&] { shape_i(x, 3); }).find("axis 3 is out of range") !=
        std::string::npos);
  CHECK(message_of<TypeError>([&] {
          make_vector({shape_i(x, 0), scalar("f", DType::float32)});
        }).find("expected an integer scalar") != std::string::npos);
  CHECK(ShapeI(1).equals(ShapeI(1)));
  CHECK_FALSE(ShapeI(1).equals(ShapeI(2)));
  CHECK(ShapeI(1).hash() == ShapeI(1).hash());
}

TEST_CASE("Dim arithmetic folds constants, simplifies and builds graph", "[shape]") {
  CHECK((Dim(3) + Dim(4)).value() == 7);
  CHECK((Dim(3) - Dim(4)).value() == -1);
  CHECK((Dim(3) * Dim(4)).value() == 12);
  CHECK(floor_div(Dim(7), Dim(2)).value() == 3);
  CHECK(floor_div(Dim(-7), Dim(2)).value() == -4);
  CHECK(floor_div(Dim(7), Dim(-2)).value() == -4);
  CHECK(ceil_div(Dim(7), Dim(2)).value() == 4);
  CHECK(ceil_div(Dim(-7), Dim(2)).value() == -3);
  CHECK(ceil_div(Dim(6), Dim(3)).value() == 2);
  CHECK(dim_max(Dim(3), Dim(5)).value() == 5);
  CHECK(dim_min(Dim(3), Dim(5)).value() == 3);
  CHECK(message_of<ValueError>([] { floor_div(Dim(3), Dim(0)); }).find("zero") !=
        std::string::npos);

  const Variable x = tensor("x", DType::float32, {kUnknown, kUnknown});
  const Dim d(shape_i(x, 0));
  const Dim e(shape_i(x, 1));
  REQUIRE(d.is_symbolic());
  CHECK((Dim() + Dim(1)).is_unknown());
  CHECK((d * Dim()).is_unknown());
  CHECK(dim_max(Dim(), d).is_unknown());
  // Trivial cases build no node.
  CHECK((d + Dim(0)).variable() == d.variable());
  CHECK((Dim(0) + d).variable() == d.variable());
  CHECK((d - Dim(0)).variable() == d.variable());
  CHECK((d * Dim(1)).variable() == d.variable());
  CHECK((Dim(1) * d).variable() == d.variable());
  CHECK(floor_div(d, Dim(1)).variable() == d.variable());
  CHECK((d * Dim(0)).value() == 0);
  CHECK((d - Dim(shape_i(x, 0))).value() == 0);
  CHECK(same_dim(d, Dim(shape_i(x, 0))));
  CHECK_FALSE(same_dim(d, e));

  const Dim expr = floor_div(d - Dim(1), Dim(2)) + Dim(1);
  CHECK(dim_expression(expr) == "(((Shape_i{0}('x') - 1) // 2) + 1)");
  CHECK(dim_expression(d + Dim(-2)) == "(Shape_i{0}('x') - 2)");
  CHECK(dim_expression(dim_max(d * e, Dim(4))) == "max((Shape_i{0}('x') * Shape_i{1}('x')), 4)");
  CHECK(dim_expression(ceil_div(d, e)) == "(0 - ((0 - Shape_i{0}('x')) // Shape_i{1}('x')))");

  const std::vector<Variable> outs = {dim_variable(expr), dim_variable(ceil_div(d, Dim(3))),
                                      dim_variable(ceil_div(d, e)),
                                      dim_variable(dim_min(d - Dim(10), e))};
  for (const auto& [rows, cols] : std::vector<std::pair<int, int>>{{7, 2}, {1, 3}, {9, 4}}) {
    INFO("x shape " << rows << "x" << cols);
    const auto results =
        convgraph::testing::run_graph({x}, outs, {Tensor::zeros(DType::float32, {rows, cols})});
    CHECK(results[0].item<std::int64_t>() == (rows - 1) / 2 + 1);
    CHECK(results[1].item<std::int64_t>() == (rows + 2) / 3);
    CHECK(results[2].item<std::int64_t>() == (rows + cols - 1) / cols);
    CHECK(results[3].item<std::int64_t>() == std::min(rows - 10, cols));
  }
}

TEST_CASE("symbolic_shape and shape_expression follow a graph with unknown dims", "[shape]") {
  const Variable x = tensor("x", DType::float32, {8, kUnknown, kUnknown});
  CHECK(shape_expression(symbolic_shape(x)) == "(8, Shape_i{1}('x'), Shape_i{2}('x'))");

  const Variable y = subtensor(
      x, {IndexItem::all(), IndexItem::slice(Dim(1), Dim(-1)), IndexItem::slice({}, {}, Dim(2))});
  const Variable z = pad(y, {{1, 1}, {0, 0}, {2, 0}});
  const Variable w = concatenate({z, z}, 0);
  const ShapeDims dims = symbolic_shape(w);
  CHECK(shape_expression(dims) ==
        "(20, max((Shape_i{1}('x') - 2), 0), (((Shape_i{2}('x') + 1) // 2) + 2))");
  CHECK(shape_expression({Dim(3)}) == "(3,)");
  CHECK(shape_expression({Dim(), Dim(2)}) == "(?, 2)");

  // The expression only needs x's shape; it agrees with the real output's shape.
  const Variable expected_shape = shape_vector(dims);
  for (const Shape& in : std::vector<Shape>{{8, 5, 7}, {8, 1, 0}, {8, 2, 1}}) {
    INFO("x shape " << shape_str(in));
    const auto results = convgraph::testing::run_graph({x}, {expected_shape, shape(w)},
                                                       {random_tensor(DType::float32, in, 3)});
    CHECK(ints(results[0]) == ints(results[1]));
  }
  const auto direct = ints(eval(expected_shape, {x}, {Tensor::zeros(DType::float32, {8, 5, 7})}));
  CHECK(direct == std::vector<std::int64_t>{20, 3, 6});

  // Reshape with -1 cancels the dims it keeps.
  const Variable r = reshape(x, ShapeDims{Dim(shape_i(x, 1)), Dim(-1)});
  CHECK(shape_expression(symbolic_shape(r)) == "(Shape_i{1}('x'), (8 * Shape_i{2}('x')))");

  // Where an op cannot say, the output's own Shape_i stands in.
  const Variable opaque = reshape(x, shape(tensor("t", DType::float32, {kUnknown, kUnknown})));
  const std::string opaque_expr = shape_expression(symbolic_shape(opaque));
  CHECK(opaque_expr.find("Shape_i{0}(output 0 of Reshape{2}") != std::string::npos);
}

TEST_CASE("reshape: values, views, static shapes and -1", "[shape]") {
  for (DType dtype : {DType::float32, DType::float64, DType::int32}) {
    INFO(dtype_name(dtype));
    const Variable x = tensor("x", dtype, {2, 3, 4});
    const Variable y = reshape(x, ShapeDims{4, -1});
    CHECK(y.type() == TensorType(dtype, {4, 6}));
    CHECK(y.owner()->op->str() == "Reshape{2}");
    const Tensor value = random_tensor(dtype, {2, 3, 4}, 5, -10, 10);
    const Tensor out = eval(y, {x}, {value});
    CHECK(out.shape() == Shape{4, 6});
    CHECK(out.to_vector<double>() == value.to_vector<double>());
  }

  const Variable x = tensor("x", DType::float32, {kUnknown, kUnknown});
  const Variable y = reshape(x, ShapeDims{3, -1});
  CHECK(y.type() == TensorType(DType::float32, {3, kUnknown}));
  const Tensor value = iota(DType::float32, {4, 3});
  // A contiguous input gives a view.
  const Tensor view = perform_of(y, {value, y.owner()->inputs[1].constant_value()});
  CHECK(view.shape() == Shape{3, 4});
  CHECK(view.shares_storage_with(value));
  // A transposed input is copied in row-major order of the transposed values.
  const Tensor transposed = value.permute({1, 0});
  const Tensor copied = perform_of(y, {transposed, y.owner()->inputs[1].constant_value()});
  CHECK_FALSE(copied.shares_storage_with(value));
  std::vector<double> expected;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 4; ++j) expected.push_back(j * 3 + i);
  }
  CHECK(copied.to_vector<double>() == expected);

  // Symbolic target: the number of rows from another tensor.
  const Variable rows = scalar("rows", DType::int64);
  const Variable z = reshape(x, ShapeDims{Dim(rows), Dim(-1)});
  CHECK(z.type() == TensorType(DType::float32, {kUnknown, kUnknown}));
  const Tensor zv = eval(z, {x, rows}, {value, Tensor::scalar(DType::int64, 6)});
  CHECK(zv.shape() == Shape{6, 2});
  CHECK(flatten(tensor("f", DType::float32, {2, 3, 4})).type() == TensorType(DType::float32, {24}));
  CHECK(eval(flatten(x), {x}, {value}).shape() == Shape{12});
  // A shape vector variable.
  const Variable target = vector("target", DType::int32);
  CHECK(message_of<ValueError>([&] { reshape(x, target); }).find("must be static") !=
        std::string::npos);
  const Variable target2 = tensor("target2", DType::int32, {3});
  const Variable t2 = reshape(x, target2);
  CHECK(t2.ndim() == 3);
  CHECK(
      eval(t2, {x, target2}, {value, Tensor::from_vector<std::int32_t>({2, -1, 3}, {3})}).shape() ==
      Shape{2, 2, 3});
}

TEST_CASE("reshape errors name the shapes", "[shape]") {
  const Variable s = tensor("s", DType::float32, {2, 3});
  const std::string build = message_of<ShapeError>([&] { reshape(s, ShapeDims{4, 2}); });
  CHECK(build.find("Reshape{2}") != std::string::npos);
  CHECK(build.find("float32[2, 3]") != std::string::npos);
  CHECK(build.find("[4, 2]") != std::string::npos);
  CHECK(message_of<ShapeError>([&] {
          reshape(s, ShapeDims{4, -1});
        }).find("[4, -1]") != std::string::npos);
  CHECK(message_of<ValueError>([&] {
          reshape(s, ShapeDims{-1, -1});
        }).find("at most one") != std::string::npos);
  CHECK(message_of<ValueError>([&] {
          reshape(s, ShapeDims{-2, 3});
        }).find("-2") != std::string::npos);
  CHECK(message_of<ValueError>([&] {
          reshape(s, ShapeDims{Dim(), 3});
        }).find("unknown") != std::string::npos);
  CHECK(message_of<TypeError>([&] {
          reshape(s, tensor("m", DType::int64, {2, 2}));
        }).find("integer vector") != std::string::npos);

  const Variable x = tensor("x", DType::float32, {kUnknown, 3});
  const Variable y = reshape(x, ShapeDims{4, -1});
  const std::string run = message_of<ShapeError>([&] {
    eval(y, {x}, {Tensor::zeros(DType::float32, {5, 3})});
  });
  CHECK(run.find("[5, 3]") != std::string::npos);
  CHECK(run.find("[4, -1]") != std::string::npos);
  const Variable n = scalar("n", DType::int64);
  const Variable z = reshape(x, ShapeDims{Dim(n), 3});
  CHECK(message_of<ShapeError>([&] {
          eval(z, {x, n}, {Tensor::zeros(DType::float32, {2, 3}), Tensor::scalar(DType::int64, 3)});
        }).find("cannot reshape an input of shape [2, 3] (6 elements) to [3, 3]") !=
        std::string::npos);
  CHECK(
      message_of<ValueError>([&] {
        eval(z, {x, n}, {Tensor::zeros(DType::float32, {2, 3}), Tensor::scalar(DType::int64, -5)});
      }).find("-5") != std::string::npos);
}

TEST_CASE("dimshuffle, transpose, expand_dims and squeeze", "[shape]") {
  for (DType dtype : {DType::float32, DType::float64, DType::int8}) {
    INFO(dtype_name(dtype));
    const Variable x = tensor("x", dtype, {2, 3, 4});
    const Variable y = transpose(x, {2, 0, 1});
    CHECK(y.type() == TensorType(dtype, {4, 2, 3}));
    const Tensor value = random_tensor(dtype, {2, 3, 4}, 11, -50, 50);
    const auto in = value.to_vector<double>();
    const auto out = eval(y, {x}, {value}).to_vector<double>();
    REQUIRE(out.size() == in.size());
    std::size_t flat = 0;
    for (int k = 0; k < 4; ++k) {
      for (int i = 0; i < 2; ++i) {
        for (int j = 0; j < 3; ++j) CHECK(out[flat++] == in[at3({2, 3, 4}, i, j, k)]);
      }
    }
  }
  const Variable m = tensor("m", DType::float32, {kUnknown, 1, 5});
  const Variable d = dimshuffle(m, {2, -1, 0});
  CHECK(d.type() == TensorType(DType::float32, {5, 1, kUnknown}));
  CHECK(d.owner()->op->str() == "DimShuffle{2,x,0}");
  const Tensor mv = iota(DType::float32, {2, 1, 5});
  const Tensor dv = perform_of(d, {mv});
  CHECK(dv.shares_storage_with(mv));
  CHECK(dv.shape() == Shape{5, 1, 2});
  CHECK(dv.to_vector<double>() == std::vector<double>{0, 5, 1, 6, 2, 7, 3, 8, 4, 9});
  CHECK(transpose(tensor("t", DType::float32, {2, 3, 4})).type() ==
        TensorType(DType::float32, {4, 3, 2}));
  CHECK(expand_dims(m, -1).type() == TensorType(DType::float32, {kUnknown, 1, 5, 1}));
  CHECK(expand_dims(m, 0).type() == TensorType(DType::float32, {1, kUnknown, 1, 5}));
  CHECK(squeeze(m, {1}).type() == TensorType(DType::float32, {kUnknown, 5}));
  CHECK(squeeze(expand_dims(m, 0), {}).type() == TensorType(DType::float32, {kUnknown, 5}));
  CHECK(eval(squeeze(m, {-2}), {m}, {mv}).to_vector<double>() == mv.to_vector<double>());
  // Infer shape keeps symbolic dims.
  CHECK(shape_expression(symbolic_shape(d)) == "(5, 1, Shape_i{0}('m'))");

  // Errors, at build time.
  CHECK(message_of<ValueError>([&] {
          dimshuffle(m, {0, 3, 1});
        }).find("out of range") != std::string::npos);
  CHECK(message_of<ValueError>([&] {
          dimshuffle(m, {0, 0, 1, 2});
        }).find("more than once") != std::string::npos);
  const std::string drop = message_of<ValueError>([&] { dimshuffle(m, {1, 2}); });
  CHECK(drop.find("drops axis 0") != std::string::npos);
  CHECK(drop.find("static dim 1") != std::string::npos);
  CHECK(message_of<ValueError>([&] {
          dimshuffle(m, {0, 1});
        }).find("drops axis 2") != std::string::npos);
  CHECK(message_of<ValueError>([&] { squeeze(m, {2}); }).find("static dim 1") != std::string::npos);
  CHECK(message_of<ValueError>([&] {
          transpose(m, {0, 1});
        }).find("permutation") != std::string::npos);
  CHECK(message_of<ValueError>([&] {
          transpose(m, {0, 1, 1});
        }).find("repeated") != std::string::npos);
  CHECK(message_of<ValueError>([&] { expand_dims(m, 5); }).find("out of range") !=
        std::string::npos);
}

TEST_CASE("flip reverses axes as a view", "[shape]") {
  for (DType dtype : {DType::float32, DType::float64, DType::int64}) {
    INFO(dtype_name(dtype));
    const Variable x = tensor("x", dtype, {2, 3, 4});
    const Variable y = flip(x, {0, -1});
    CHECK(y.owner()->op->str() == "Flip{0,2}");
    CHECK(y.type() == x.type());
    const Tensor value = random_tensor(dtype, {2, 3, 4}, 13, -50, 50);
    const auto in = value.to_vector<double>();
    const Tensor result = perform_of(y, {value});
    CHECK(result.shares_storage_with(value));
    const auto out = eval(y, {x}, {value}).to_vector<double>();
    std::size_t flat = 0;
    for (int i = 0; i < 2; ++i) {
      for (int j = 0; j < 3; ++j) {
        for (int k = 0; k < 4; ++k) CHECK(out[flat++] == in[at3({2, 3, 4}, 1 - i, j, 3 - k)]);
      }
    }
    // Reading a flipped view through reshape (which copies it) gives the same order.
    CHECK(eval(flatten(y), {x}, {value}).to_vector<double>() == out);
  }
  const Variable e = tensor("e", DType::float32, {kUnknown, 2});
  CHECK(eval(flip(e, {0}), {e}, {Tensor::zeros(DType::float32, {0, 2})}).shape() == Shape{0, 2});
  CHECK(message_of<ValueError>([&] { flip(e, {0, -2}); }).find("repeated") != std::string::npos);
  CHECK(message_of<ValueError>([&] { flip(e, {2}); }).find("out of range") != std::string::npos);
}

TEST_CASE("view ops copy every dtype faithfully", "[shape]") {
  for (DType dtype : kAllDTypes) {
    INFO(dtype_name(dtype));
    const Variable x = tensor("x", dtype, {2, 3});
    const Tensor value = random_tensor(dtype, {2, 3}, 17, -4, 4);
    const auto in = value.to_vector<double>();
    const auto results = convgraph::testing::run_graph(
        {x}, {flatten(transpose(x)), flip(x, {1}), dimshuffle(x, {-1, 1, 0}), shape(x)}, {value});
    const std::vector<double> transposed = {in[0], in[3], in[1], in[4], in[2], in[5]};
    const std::vector<double> flipped = {in[2], in[1], in[0], in[5], in[4], in[3]};
    CHECK(results[0].dtype() == dtype);
    CHECK(results[0].to_vector<double>() == transposed);
    CHECK(results[1].to_vector<double>() == flipped);
    CHECK(results[2].shape() == Shape{1, 3, 2});
    CHECK(results[2].to_vector<double>() == transposed);
    CHECK(ints(results[3]) == std::vector<std::int64_t>{2, 3});
  }
}

TEST_CASE("gradients and R-operators of reshape, dimshuffle and flip", "[shape]") {
  const Tensor a = random_tensor(DType::float64, {2, 3, 2}, 21);
  verify_grad(
      [](const std::vector<Variable>& in) {
        return reshape(in[0], ShapeDims{3, -1});
      },
      {a});
  verify_grad([](const std::vector<Variable>& in) { return flatten(in[0]); }, {a});
  verify_grad(
      [](const std::vector<Variable>& in) {
        return dimshuffle(in[0], {2, -1, 0, 1});
      },
      {a});
  const Tensor b = random_tensor(DType::float64, {3, 1, 2}, 22);
  verify_grad([](const std::vector<Variable>& in) { return dimshuffle(in[0], {2, 0}); }, {b});
  verify_grad([](const std::vector<Variable>& in) { return flip(in[0], {0, 2}); }, {a});

  CHECK(check_rop(
            [](const std::vector<Variable>& in) {
              return reshape(in[0], ShapeDims{-1, 4});
            },
            {a}) == "");
  CHECK(check_rop([](const std::vector<Variable>& in) { return transpose(in[0]); }, {a}) == "");
  CHECK(check_rop([](const std::vector<Variable>& in) { return squeeze(in[0], {1}); }, {b}) == "");
  CHECK(check_rop([](const std::vector<Variable>& in) { return flip(in[0], {1}); }, {a}) == "");
}
