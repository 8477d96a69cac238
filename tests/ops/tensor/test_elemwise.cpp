// Elementwise ops: values against plain loops over std:: math, broadcasting, the dtype rules,
// errors, gradients and R-operators.
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "convgraph/ops/tensor/elemwise.hpp"
#include "support/catch.hpp"
#include "support/messages.hpp"
#include "support/test_util.hpp"

namespace {

using namespace convgraph;
using convgraph::testing::contains;
using convgraph::testing::random_tensor;

// Runs the reference perform of a bare Elemwise (numpy broadcasting at run time).
Tensor run_op(ScalarOp op, const std::vector<Tensor>& inputs) {
  const Elemwise elemwise(op);
  std::vector<Tensor> outputs;
  elemwise.perform(inputs, outputs);
  REQUIRE(outputs.size() == 1);
  return outputs[0];
}

// numpy's broadcast shape of SHAPES, written out independently of the library.
Shape broadcast_shape(const std::vector<Shape>& shapes) {
  std::size_t rank = 0;
  for (const Shape& s : shapes) rank = std::max(rank, s.size());
  Shape out(rank, 1);
  for (const Shape& s : shapes) {
    for (std::size_t i = 0; i < s.size(); ++i) {
      std::int64_t& o = out[rank - s.size() + i];
      if (s[i] != 1) o = s[i];
    }
  }
  return out;
}

// The values of T (row-major) read at every index of OUT_SHAPE under numpy broadcasting.
std::vector<double> broadcast_values(const Tensor& t, const Shape& out_shape) {
  const std::vector<double> values = t.to_vector<double>();
  const Shape& shape = t.shape();
  const std::size_t rank = out_shape.size();
  const std::size_t pad = rank - shape.size();
  std::int64_t total = 1;
  for (std::int64_t d : out_shape) total *= d;
  std::vector<double> result;
  for (std::int64_t flat = 0; flat < total; ++flat) {
    std::int64_t rest = flat;
    std::vector<std::int64_t> index(rank);
    for (std::size_t a = rank; a-- > 0;) {
      index[a] = rest % out_shape[a];
      rest /= out_shape[a];
    }
    std::int64_t in_flat = 0;
    for (std::size_t a = 0; a < shape.size(); ++a) {
      const std::int64_t i = shape[a] == 1 ? 0 : index[a + pad];
      in_flat = in_flat * shape[a] + i;
    }
    result.push_back(values[static_cast<std::size_t>(in_flat)]);
  }
  return result;
}

Tensor expected_unary(const Tensor& x, const std::function<double(double)>& f, DType out) {
  std::vector<double> values = x.to_vector<double>();
  for (double& v : values) v = f(v);
  return Tensor::from_vector<double>(values, x.shape()).cast(out);
}

Tensor expected_binary(const Tensor& a, const Tensor& b,
                       const std::function<double(double, double)>& f, DType out) {
  const Shape shape = broadcast_shape({a.shape(), b.shape()});
  const auto va = broadcast_values(a, shape);
  const auto vb = broadcast_values(b, shape);
  std::vector<double> values(va.size());
  for (std::size_t i = 0; i < va.size(); ++i) values[i] = f(va[i], vb[i]);
  return Tensor::from_vector<double>(values, shape).cast(out);
}

double tolerance(DType dtype) {
  return dtype == DType::float64 ? 1e-12 : 2e-6;
}

struct UnaryCase {
  ScalarOp op;
  std::function<double(double)> f;
  double low, high;
};

const std::vector<UnaryCase>& unary_cases() {
  static const std::vector<UnaryCase> cases = {
      {ScalarOp::neg, [](double x) { return -x; }, -3, 3},
      {ScalarOp::abs, [](double x) { return std::abs(x); }, -3, 3},
      {ScalarOp::sign, [](double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); }, -3, 3},
      {ScalarOp::square, [](double x) { return x * x; }, -3, 3},
      {ScalarOp::exp, [](double x) { return std::exp(x); }, -5, 5},
      {ScalarOp::log, [](double x) { return std::log(x); }, 0.01, 10},
      {ScalarOp::log1p, [](double x) { return std::log1p(x); }, -0.9, 10},
      {ScalarOp::sqrt, [](double x) { return std::sqrt(x); }, 0, 10},
      {ScalarOp::relu, [](double x) { return x > 0 ? x : 0.0; }, -3, 3},
      {ScalarOp::sigmoid, [](double x) { return 1.0 / (1.0 + std::exp(-x)); }, -30, 30},
      {ScalarOp::tanh, [](double x) { return std::tanh(x); }, -5, 5},
      {ScalarOp::softplus, [](double x) { return std::log(1.0 + std::exp(x)); }, -30, 30},
  };
  return cases;
}

struct BinaryCase {
  ScalarOp op;
  std::function<double(double, double)> f;
  double low_a, high_a, low_b, high_b;
  bool gives_bool;
};

const std::vector<BinaryCase>& binary_cases() {
  static const std::vector<BinaryCase> cases = {
      {ScalarOp::add, [](double a, double b) { return a + b; }, -3, 3, -3, 3, false},
      {ScalarOp::sub, [](double a, double b) { return a - b; }, -3, 3, -3, 3, false},
      {ScalarOp::mul, [](double a, double b) { return a * b; }, -3, 3, -3, 3, false},
      {ScalarOp::true_div, [](double a, double b) { return a / b; }, -3, 3, 0.5, 3, false},
      {ScalarOp::int_div, [](double a, double b) { return std::floor(a / b); }, -9, 9, 0.7, 3,
       false},
      {ScalarOp::mod, [](double a, double b) { return a - b * std::floor(a / b); }, -9, 9, 0.7, 3,
       false},
      {ScalarOp::pow, [](double a, double b) { return std::pow(a, b); }, 0.1, 3, -2, 2, false},
      {ScalarOp::maximum, [](double a, double b) { return a > b ? a : b; }, -3, 3, -3, 3, false},
      {ScalarOp::minimum, [](double a, double b) { return a < b ? a : b; }, -3, 3, -3, 3, false},
      {ScalarOp::eq, [](double a, double b) { return double(a == b); }, -3, 3, -3, 3, true},
      {ScalarOp::neq, [](double a, double b) { return double(a != b); }, -3, 3, -3, 3, true},
      {ScalarOp::lt, [](double a, double b) { return double(a < b); }, -3, 3, -3, 3, true},
      {ScalarOp::le, [](double a, double b) { return double(a <= b); }, -3, 3, -3, 3, true},
      {ScalarOp::gt, [](double a, double b) { return double(a > b); }, -3, 3, -3, 3, true},
      {ScalarOp::ge, [](double a, double b) { return double(a >= b); }, -3, 3, -3, 3, true},
  };
  return cases;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Values

TEST_CASE("elemwise unary ops match std:: math in float32 and float64", "[elemwise]") {
  for (DType dtype : {DType::float32, DType::float64}) {
    for (const UnaryCase& c : unary_cases()) {
      INFO(scalar_op_name(c.op) << " " << dtype_name(dtype));
      const Tensor x = random_tensor(dtype, {5, 7}, 11, c.low, c.high);
      const Tensor actual = run_op(c.op, {x});
      REQUIRE_ALLCLOSE(actual, expected_unary(x, c.f, dtype), tolerance(dtype), tolerance(dtype));
    }
  }
}

TEST_CASE("elemwise binary ops match plain loops in float32 and float64", "[elemwise]") {
  for (DType dtype : {DType::float32, DType::float64}) {
    for (const BinaryCase& c : binary_cases()) {
      INFO(scalar_op_name(c.op) << " " << dtype_name(dtype));
      Tensor a = random_tensor(dtype, {4, 6}, 21, c.low_a, c.high_a);
      Tensor b = random_tensor(dtype, {4, 6}, 22, c.low_b, c.high_b);
      if (c.gives_bool) {
        // Make some elements equal so that eq/le/ge see ties.
        a = run_op(ScalarOp::where, {random_tensor(DType::boolean, {4, 6}, 23), b, a});
      }
      const DType out = c.gives_bool ? DType::boolean : dtype;
      const Tensor actual = run_op(c.op, {a, b});
      REQUIRE_ALLCLOSE(actual, expected_binary(a, b, c.f, out), tolerance(dtype), tolerance(dtype));
    }
  }
}

TEST_CASE("elemwise unary ops are stable at extreme inputs", "[elemwise]") {
  const Tensor x = Tensor::from_vector<double>({-1000.0, -40.0, 0.0, 40.0, 1000.0}, {5});
  const auto sig = run_op(ScalarOp::sigmoid, {x}).to_vector<double>();
  CHECK(sig[0] == 0.0);
  CHECK(std::abs(sig[1] / std::exp(-40.0) - 1) < 1e-12);
  CHECK(sig[2] == 0.5);
  CHECK(sig[4] == 1.0);
  const auto sp = run_op(ScalarOp::softplus, {x}).to_vector<double>();
  CHECK(sp[0] == 0.0);
  CHECK(std::abs(sp[1] / std::exp(-40.0) - 1) < 1e-12);
  CHECK(std::abs(sp[2] - std::log(2.0)) < 1e-15);
  CHECK(sp[3] == 40.0);
  CHECK(sp[4] == 1000.0);
  const auto th = run_op(ScalarOp::tanh, {x}).to_vector<double>();
  CHECK(th[0] == -1.0);
  CHECK(th[4] == 1.0);
  const Tensor x32 = x.cast(DType::float32);
  const auto sp32 = run_op(ScalarOp::softplus, {x32}).to_vector<double>();
  CHECK(std::isfinite(sp32[4]));
  CHECK(sp32[4] == 1000.0);
}

TEST_CASE("elemwise NaN propagates through maximum, minimum, relu and sign", "[elemwise]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor a = Tensor::from_vector<double>({nan, 1.0}, {2});
  const Tensor b = Tensor::from_vector<double>({1.0, nan}, {2});
  for (ScalarOp op : {ScalarOp::maximum, ScalarOp::minimum}) {
    const auto v = run_op(op, {a, b}).to_vector<double>();
    CHECK(std::isnan(v[0]));
    CHECK(std::isnan(v[1]));
  }
  CHECK(std::isnan(run_op(ScalarOp::relu, {a}).to_vector<double>()[0]));
  CHECK(std::isnan(run_op(ScalarOp::sign, {a}).to_vector<double>()[0]));
}

TEST_CASE("elemwise integer ops follow Python semantics", "[elemwise]") {
  for (DType dtype : {DType::int32, DType::int64, DType::int8}) {
    INFO(dtype_name(dtype));
    const Tensor a = Tensor::from_vector<double>({7, -7, 7, -7, 0, 6}, {6}).cast(dtype);
    const Tensor b = Tensor::from_vector<double>({2, 2, -2, -2, 3, 3}, {6}).cast(dtype);
    CHECK(run_op(ScalarOp::int_div, {a, b}).to_vector<std::int64_t>() ==
          std::vector<std::int64_t>{3, -4, -4, 3, 0, 2});
    CHECK(run_op(ScalarOp::mod, {a, b}).to_vector<std::int64_t>() ==
          std::vector<std::int64_t>{1, 1, -1, -1, 0, 0});
    CHECK(run_op(ScalarOp::add, {a, b}).to_vector<std::int64_t>() ==
          std::vector<std::int64_t>{9, -5, 5, -9, 3, 9});
    CHECK(run_op(ScalarOp::sub, {a, b}).to_vector<std::int64_t>() ==
          std::vector<std::int64_t>{5, -9, 9, -5, -3, 3});
    CHECK(run_op(ScalarOp::mul, {a, b}).to_vector<std::int64_t>() ==
          std::vector<std::int64_t>{14, -14, -14, 14, 0, 18});
    CHECK(run_op(ScalarOp::maximum, {a, b}).to_vector<std::int64_t>() ==
          std::vector<std::int64_t>{7, 2, 7, -2, 3, 6});
    CHECK(run_op(ScalarOp::minimum, {a, b}).to_vector<std::int64_t>() ==
          std::vector<std::int64_t>{2, -7, -2, -7, 0, 3});
    CHECK(run_op(ScalarOp::abs, {a}).to_vector<std::int64_t>() ==
          std::vector<std::int64_t>{7, 7, 7, 7, 0, 6});
    CHECK(run_op(ScalarOp::sign, {a}).to_vector<std::int64_t>() ==
          std::vector<std::int64_t>{1, -1, 1, -1, 0, 1});
    CHECK(run_op(ScalarOp::neg, {a}).to_vector<std::int64_t>() ==
          std::vector<std::int64_t>{-7, 7, -7, 7, 0, -6});
    CHECK(run_op(ScalarOp::square, {a}).to_vector<std::int64_t>() ==
          std::vector<std::int64_t>{49, 49, 49, 49, 0, 36});
    CHECK(run_op(ScalarOp::relu, {a}).to_vector<std::int64_t>() ==
          std::vector<std::int64_t>{7, 0, 7, 0, 0, 6});
    CHECK(run_op(ScalarOp::lt, {a, b}).to_vector<bool>() ==
          std::vector<bool>{false, true, false, true, true, false});
    const Tensor base = Tensor::from_vector<double>({2, 3, -2, 5, 0, -1}, {6}).cast(dtype);
    const Tensor exponent = Tensor::from_vector<double>({6, 0, 3, 1, 0, 5}, {6}).cast(dtype);
    CHECK(run_op(ScalarOp::pow, {base, exponent}).to_vector<std::int64_t>() ==
          std::vector<std::int64_t>{64, 1, -8, 5, 1, -1});
  }
}

TEST_CASE("elemwise integer arithmetic wraps instead of overflowing", "[elemwise]") {
  const std::int32_t lowest = std::numeric_limits<std::int32_t>::min();
  const std::int32_t highest = std::numeric_limits<std::int32_t>::max();
  const Tensor a = Tensor::from_vector<std::int32_t>({lowest, highest, lowest}, {3});
  const Tensor minus_one = Tensor::from_vector<std::int32_t>({-1, -1, -1}, {3});
  const Tensor one = Tensor::from_vector<std::int32_t>({1, 1, 1}, {3});
  CHECK(run_op(ScalarOp::int_div, {a, minus_one}).to_vector<std::int32_t>() ==
        std::vector<std::int32_t>{lowest, -highest, lowest});
  CHECK(run_op(ScalarOp::mod, {a, minus_one}).to_vector<std::int32_t>() ==
        std::vector<std::int32_t>{0, 0, 0});
  CHECK(run_op(ScalarOp::add, {a, one}).to_vector<std::int32_t>() ==
        std::vector<std::int32_t>{lowest + 1, lowest, lowest + 1});
  CHECK(run_op(ScalarOp::abs, {a}).to_vector<std::int32_t>()[0] == lowest);
}

TEST_CASE("elemwise float floor division and modulo", "[elemwise]") {
  const Tensor a = Tensor::from_vector<double>({7.5, -7.5, 7.5, -7.5, 6.0}, {5});
  const Tensor b = Tensor::from_vector<double>({2.0, 2.0, -2.0, -2.0, 3.0}, {5});
  CHECK(run_op(ScalarOp::int_div, {a, b}).to_vector<double>() ==
        std::vector<double>{3.0, -4.0, -4.0, 3.0, 2.0});
  CHECK(run_op(ScalarOp::mod, {a, b}).to_vector<double>() ==
        std::vector<double>{1.5, 0.5, -0.5, -1.5, 0.0});
}

TEST_CASE("elemwise bool ops", "[elemwise]") {
  const Tensor a = Tensor::from_vector<bool>({true, true, false, false}, {4});
  const Tensor b = Tensor::from_vector<bool>({true, false, true, false}, {4});
  CHECK(run_op(ScalarOp::logical_and, {a, b}).to_vector<bool>() ==
        std::vector<bool>{true, false, false, false});
  CHECK(run_op(ScalarOp::logical_or, {a, b}).to_vector<bool>() ==
        std::vector<bool>{true, true, true, false});
  CHECK(run_op(ScalarOp::logical_not, {a}).to_vector<bool>() ==
        std::vector<bool>{false, false, true, true});
  CHECK(run_op(ScalarOp::eq, {a, b}).to_vector<bool>() ==
        std::vector<bool>{true, false, false, true});
  CHECK(run_op(ScalarOp::gt, {a, b}).to_vector<bool>() ==
        std::vector<bool>{false, true, false, false});
  CHECK(run_op(ScalarOp::maximum, {a, b}).to_vector<bool>() ==
        std::vector<bool>{true, true, true, false});
  const Tensor x = Tensor::from_vector<std::int64_t>({1, 2, 3, 4}, {4});
  const Tensor y = Tensor::from_vector<std::int64_t>({-1, -2, -3, -4}, {4});
  CHECK(run_op(ScalarOp::where, {a, x, y}).to_vector<std::int64_t>() ==
        std::vector<std::int64_t>{1, 2, -3, -4});
  CHECK(run_op(ScalarOp::where, {b, a, b}).to_vector<bool>() ==
        std::vector<bool>{true, false, false, false});
}

TEST_CASE("elemwise float16 computes in float", "[elemwise]") {
  const Tensor a = random_tensor(DType::float16, {3, 5}, 31, -2, 2);
  const Tensor b = random_tensor(DType::float16, {3, 5}, 32, 0.5, 2);
  const double tol = 2e-3;
  REQUIRE_ALLCLOSE(run_op(ScalarOp::add, {a, b}),
                   expected_binary(
                       a, b, [](double x, double y) { return x + y; }, DType::float16),
                   tol, tol);
  REQUIRE_ALLCLOSE(run_op(ScalarOp::true_div, {a, b}),
                   expected_binary(
                       a, b, [](double x, double y) { return x / y; }, DType::float16),
                   tol, tol);
  REQUIRE_ALLCLOSE(run_op(ScalarOp::exp, {a}),
                   expected_unary(
                       a, [](double x) { return std::exp(x); }, DType::float16),
                   tol, tol);
  REQUIRE_ALLCLOSE(run_op(ScalarOp::sigmoid, {a}),
                   expected_unary(
                       a, [](double x) { return 1 / (1 + std::exp(-x)); }, DType::float16),
                   tol, tol);
  REQUIRE(run_op(ScalarOp::lt, {a, b}).dtype() == DType::boolean);
  REQUIRE_ALLCLOSE(run_op(ScalarOp::lt, {a, b}),
                   expected_binary(
                       a, b, [](double x, double y) { return double(x < y); }, DType::boolean),
                   0, 0);
}

// ---------------------------------------------------------------------------------------------
// Broadcasting and layouts

TEST_CASE("elemwise broadcasting follows numpy", "[elemwise]") {
  const auto plus = [](double x, double y) { return x + y; };
  const auto times = [](double x, double y) { return x * y; };
  struct Case {
    Shape a, b;
  };
  const std::vector<Case> cases = {
      {{3, 1}, {1, 4}},     // both sides broadcast
      {{2, 3, 4}, {4}},     // rank padding on the right operand
      {{4}, {2, 3, 4}},     // rank padding on the left operand
      {{}, {2, 3}},         // a scalar
      {{2, 3}, {}},         // a scalar on the right
      {{2, 1, 4}, {3, 1}},  // padding and broadcasting at once
      {{0, 3}, {1, 3}},     // empty output
      {{5, 1, 1}, {1, 1, 1}},
  };
  for (DType dtype : {DType::float32, DType::float64, DType::int32}) {
    for (const Case& c : cases) {
      INFO(shape_str(c.a) << " with " << shape_str(c.b) << " in " << dtype_name(dtype));
      const Tensor a = random_tensor(dtype, c.a, 41, -5, 5);
      const Tensor b = random_tensor(dtype, c.b, 42, -5, 5);
      REQUIRE_ALLCLOSE(run_op(ScalarOp::add, {a, b}), expected_binary(a, b, plus, dtype), 1e-6,
                       1e-6);
      REQUIRE_ALLCLOSE(run_op(ScalarOp::mul, {b, a}), expected_binary(b, a, times, dtype), 1e-6,
                       1e-6);
    }
  }
}

TEST_CASE("elemwise where broadcasts all three operands", "[elemwise]") {
  const Tensor cond = random_tensor(DType::boolean, {3, 1, 1}, 51);
  const Tensor a = random_tensor(DType::float64, {1, 4, 1}, 52);
  const Tensor b = random_tensor(DType::float64, {5}, 53);
  const Tensor out = run_op(ScalarOp::where, {cond, a, b});
  REQUIRE(out.shape() == Shape{3, 4, 5});
  const Shape shape{3, 4, 5};
  const auto vc = broadcast_values(cond, shape);
  const auto va = broadcast_values(a, shape);
  const auto vb = broadcast_values(b, shape);
  const auto vo = out.to_vector<double>();
  for (std::size_t i = 0; i < vo.size(); ++i) {
    REQUIRE(vo[i] == (vc[i] != 0 ? va[i] : vb[i]));
  }
}

TEST_CASE("elemwise reads non-contiguous inputs", "[elemwise]") {
  const auto minus = [](double x, double y) { return x - y; };
  const Tensor base = random_tensor(DType::float64, {6, 8}, 61);
  const Tensor other = random_tensor(DType::float64, {8, 6}, 62);
  SECTION("a transposed view") {
    const Tensor t = other.permute({1, 0});
    REQUIRE_FALSE(t.is_contiguous());
    REQUIRE_ALLCLOSE(run_op(ScalarOp::sub, {base, t}),
                     expected_binary(base, t, minus, DType::float64), 0, 0);
  }
  SECTION("strided and reversed slices") {
    const Tensor every_other = base.slice(1, 0, 8, 2);                    // [6, 4]
    const Tensor reversed = other.slice(0, 7, -1, -2).slice(1, 0, 4, 1);  // [4, 4]
    const Tensor rows = base.slice(0, 1, 5, 1);                           // [4, 8]
    const Tensor lhs = rows.slice(1, 0, 4, 1);                            // [4, 4]
    REQUIRE_ALLCLOSE(run_op(ScalarOp::sub, {lhs, reversed}),
                     expected_binary(lhs, reversed, minus, DType::float64), 0, 0);
    const Tensor column = every_other.slice(1, 1, 2, 1);  // [6, 1]
    REQUIRE_ALLCLOSE(run_op(ScalarOp::sub, {every_other, column}),
                     expected_binary(every_other, column, minus, DType::float64), 0, 0);
  }
  SECTION("transposed operands visited in tiles") {
    // Inner strides of 40 and 70 elements take the tiled path; the sizes are not multiples of
    // the tile.
    const Tensor x = random_tensor(DType::float32, {3, 70, 40}, 64).permute({0, 2, 1});
    const Tensor y = random_tensor(DType::float32, {3, 40, 70}, 65);
    REQUIRE_ALLCLOSE(run_op(ScalarOp::sub, {y, x}), expected_binary(y, x, minus, DType::float32), 0,
                     0);
    const Tensor flipped = random_tensor(DType::float64, {70, 40}, 66).slice(0, 69, -1, -1);
    const Tensor xt = flipped.permute({1, 0});  // strides (1, -40)
    const Tensor col = random_tensor(DType::float64, {40, 1}, 67);
    REQUIRE_ALLCLOSE(run_op(ScalarOp::sub, {xt, col}),
                     expected_binary(xt, col, minus, DType::float64), 0, 0);
  }
  SECTION("a zero-stride input") {
    const Tensor row = random_tensor(DType::float64, {8}, 63);
    const Tensor expanded = row.as_strided({6, 8}, {0, 1}, row.offset());
    REQUIRE_ALLCLOSE(run_op(ScalarOp::sub, {base, expanded}),
                     expected_binary(base, row, minus, DType::float64), 0, 0);
  }
}

TEST_CASE("elemwise large tensors take the parallel paths correctly", "[elemwise]") {
  const auto f = [](double x, double y) { return x * y + 0.0; };
  SECTION("contiguous") {
    const Tensor a = random_tensor(DType::float32, {300, 257}, 71);
    const Tensor b = random_tensor(DType::float32, {300, 257}, 72);
    REQUIRE_ALLCLOSE(run_op(ScalarOp::mul, {a, b}), expected_binary(a, b, f, DType::float32), 1e-6,
                     1e-7);
  }
  SECTION("broadcast") {
    const Tensor a = random_tensor(DType::float64, {1, 300, 1}, 73);
    const Tensor b = random_tensor(DType::float64, {257}, 74);
    REQUIRE_ALLCLOSE(run_op(ScalarOp::mul, {a, b}), expected_binary(a, b, f, DType::float64), 0, 0);
  }
  SECTION("strided") {
    const Tensor a = random_tensor(DType::float64, {257, 300}, 75).permute({1, 0});
    const Tensor b = random_tensor(DType::float64, {300, 257}, 76);
    REQUIRE_ALLCLOSE(run_op(ScalarOp::mul, {a, b}), expected_binary(a, b, f, DType::float64), 0, 0);
  }
  SECTION("scalar operand") {
    const Tensor a = random_tensor(DType::int64, {100000}, 77, -100, 100);
    const Tensor b = Tensor::scalar(DType::int64, 3);
    REQUIRE_ALLCLOSE(
        run_op(ScalarOp::mod, {a, b}),
        expected_binary(
            a, b, [](double x, double y) { return x - y * std::floor(x / y); }, DType::int64),
        0, 0);
  }
}

// ---------------------------------------------------------------------------------------------
// Cast

TEST_CASE("cast converts values by the documented rules", "[elemwise]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor x = Tensor::from_vector<double>({-1.7, 2.9, 0.0, nan, 1e20, -1e20, -0.5}, {7});
  const Cast to_int32(DType::int32);
  std::vector<Tensor> out;
  to_int32.perform({x}, out);
  CHECK(out[0].to_vector<std::int32_t>() ==
        std::vector<std::int32_t>{-1, 2, 0, 0, std::numeric_limits<std::int32_t>::max(),
                                  std::numeric_limits<std::int32_t>::min(), 0});
  const Cast to_bool(DType::boolean);
  to_bool.perform({x}, out);
  CHECK(out[0].to_vector<bool>() == std::vector<bool>{true, true, false, true, true, true, true});
  const Cast to_half(DType::float16);
  to_half.perform({Tensor::from_vector<std::int64_t>({3, -2048}, {2})}, out);
  CHECK(out[0].dtype() == DType::float16);
  CHECK(out[0].to_vector<double>() == std::vector<double>{3.0, -2048.0});
  const Cast to_f64(DType::float64);
  to_f64.perform({Tensor::from_vector<bool>({true, false}, {2}).as_strided({2, 2}, {0, 1}, 0)},
                 out);
  CHECK(out[0].to_vector<double>() == std::vector<double>{1, 0, 1, 0});
  CHECK(to_int32.str() == "Cast{int32}");
  CHECK(to_int32.equals(Cast(DType::int32)));
  CHECK_FALSE(to_int32.equals(to_f64));
  CHECK(to_int32.hash() == Cast(DType::int32).hash());
}

// ---------------------------------------------------------------------------------------------
// The op as a value

TEST_CASE("elemwise op identity and printing", "[elemwise]") {
  const Elemwise add_op(ScalarOp::add);
  CHECK(add_op.str() == "Elemwise{add}");
  CHECK(add_op.name() == "Elemwise");
  CHECK(Elemwise(ScalarOp::true_div).str() == "Elemwise{true_div}");
  CHECK(add_op.equals(Elemwise(ScalarOp::add)));
  CHECK(add_op.hash() == Elemwise(ScalarOp::add).hash());
  CHECK_FALSE(add_op.equals(Elemwise(ScalarOp::mul)));
  CHECK_FALSE(add_op.equals(Cast(DType::float32)));
  const Elemwise recorded(ScalarOp::add, {{true, false}, {false}});
  CHECK_FALSE(add_op.equals(recorded));
  CHECK(recorded.equals(Elemwise(ScalarOp::add, {{true, false}, {false}})));
  CHECK(recorded.hash() == Elemwise(ScalarOp::add, {{true, false}, {false}}).hash());
  CHECK(scalar_op_arity(ScalarOp::where) == 3);
  CHECK(scalar_op_arity(ScalarOp::exp) == 1);
  CHECK(scalar_op_arity(ScalarOp::pow) == 2);
}

TEST_CASE("elemwise builders infer output types", "[elemwise]") {
  const Variable x = tensor("x", DType::float32, {3, 1});
  const Variable y = tensor("y", DType::float32, {1, 4});
  CHECK(add(x, y).type() == TensorType(DType::float32, {3, 4}));
  const Variable u = tensor("u", DType::float32, {std::nullopt, 1, 5});
  const Variable v = tensor("v", DType::float32, {7, std::nullopt, 1});
  CHECK(mul(u, v).type().dims == StaticShape{7, std::nullopt, 5});
  const Variable w = tensor("w", DType::float32, {std::nullopt, 1});
  const Variable z = tensor("z", DType::float32, {1, 1});
  CHECK(sub(w, z).type().dims == StaticShape{std::nullopt, 1});
  CHECK(exp(scalar("s", DType::float64)).type() == TensorType(DType::float64, {}));
  CHECK(gt(x, y).dtype() == DType::boolean);
  const Variable c = tensor("c", DType::boolean, {3, 1});
  CHECK(where(c, y, scalar("t", DType::float32)).type() == TensorType(DType::float32, {3, 4}));
}

TEST_CASE("elemwise dtype promotion inserts casts", "[elemwise]") {
  const Variable i32 = vector("i", DType::int32);
  const Variable i64 = vector("j", DType::int64);
  const Variable f32 = vector("f", DType::float32);
  const Variable f64 = vector("d", DType::float64);
  const Variable h = vector("h", DType::float16);
  const Variable b = vector("b", DType::boolean);

  const Variable mixed = add(i32, f32);
  CHECK(mixed.dtype() == DType::float32);
  REQUIRE(mixed.owner() != nullptr);
  const auto* op = dynamic_cast<const Elemwise*>(mixed.owner()->op.get());
  REQUIRE(op != nullptr);
  CHECK(op->scalar_op() == ScalarOp::add);
  REQUIRE(mixed.owner()->inputs[0].owner() != nullptr);
  CHECK(mixed.owner()->inputs[0].owner()->op->str() == "Cast{float32}");
  CHECK(mixed.owner()->inputs[1] == f32);

  CHECK(mul(i32, i64).dtype() == DType::int64);
  CHECK(sub(f32, f64).dtype() == DType::float64);
  CHECK(add(h, i64).dtype() == DType::float16);
  CHECK(add(b, i32).dtype() == DType::int32);
  CHECK(pow(i32, f64).dtype() == DType::float64);
  CHECK(maximum(b, b).dtype() == DType::boolean);
  CHECK(lt(i32, f64).dtype() == DType::boolean);
  CHECK(eq(b, b).dtype() == DType::boolean);
  CHECK(where(b, i32, f32).dtype() == DType::float32);
  CHECK(int_div(i32, i32).dtype() == DType::int32);
  CHECK(mod(f32, i32).dtype() == DType::float32);
  CHECK(cast(f32, DType::float32) == f32);
  CHECK(cast(f32, DType::int8).dtype() == DType::int8);

  SECTION("true_div of integers gives floatX") {
    CHECK(true_div(i32, i64).dtype() == DType::float32);
    CHECK(true_div(b, i32).dtype() == DType::float32);
    CHECK(true_div(h, i32).dtype() == DType::float16);
    ScopedFlags flags("floatX=float64");
    CHECK(true_div(i32, i32).dtype() == DType::float64);
    CHECK((i32 / 2.0).dtype() == DType::float64);
  }
  SECTION("arithmetic on bools alone is a TypeError") {
    REQUIRE_THROWS_AS(add(b, b), TypeError);
    REQUIRE_THROWS_AS(neg(b), TypeError);
    REQUIRE_THROWS_AS(true_div(b, b), TypeError);
    REQUIRE_THROWS_AS(mod(b, b), TypeError);
    try {
      mul(b, b);
      FAIL("no exception");
    } catch (const TypeError& e) {
      INFO(e.what());
      CHECK(contains(e.what(), "Elemwise{mul}: input 0 ('b') has dtype bool"));
    }
  }
}

TEST_CASE("elemwise numbers take the variable's dtype", "[elemwise]") {
  CHECK(number_dtype(2.0, DType::float16) == DType::float16);
  CHECK(number_dtype(0.5, DType::float64) == DType::float64);
  CHECK(number_dtype(2.0, DType::int32) == DType::int32);
  CHECK(number_dtype(-128.0, DType::int8) == DType::int8);
  CHECK(number_dtype(300.0, DType::int8) == DType::int64);
  CHECK(number_dtype(1e30, DType::int64) == DType::float32);
  CHECK(number_dtype(2.5, DType::int32) == DType::float32);
  CHECK(number_dtype(1.0, DType::boolean) == DType::int64);
  CHECK(number_dtype(0.5, DType::boolean) == DType::float32);
  CHECK(number_dtype(std::numeric_limits<double>::quiet_NaN(), DType::int32) == DType::float32);

  const Variable i = vector("i", DType::int32);
  const Variable f = vector("f", DType::float64);
  CHECK((i + 1.0).dtype() == DType::int32);
  CHECK((i * 1.5).dtype() == DType::float32);
  CHECK((i / 2.0).dtype() == DType::float32);
  CHECK((2.0 - i).dtype() == DType::int32);
  CHECK((f * 3.0).dtype() == DType::float64);
  CHECK((1.0 / f).dtype() == DType::float64);
  CHECK((-f).dtype() == DType::float64);
  CHECK((f + f).dtype() == DType::float64);

  CHECK(constant(3.0, DType::int8).type() == TensorType(DType::int8, {}));
  REQUIRE_THROWS_AS(constant(0.5, DType::int32), ValueError);
  REQUIRE_THROWS_AS(constant(200.0, DType::int8), ValueError);
  REQUIRE_THROWS_AS(constant(2.0, DType::boolean), ValueError);
  const Variable k = constant(Tensor::from_vector<double>({1, 2}, {2}));
  CHECK(k.is_constant());
  CHECK(k.type() == TensorType(DType::float64, {2}));
}

TEST_CASE("elemwise infer_shape combines input dims", "[elemwise]") {
  const Variable x = tensor("x", DType::float32, {std::nullopt, std::nullopt, 1});
  const Variable y = tensor("y", DType::float32, {std::nullopt, 4, 1});
  const Variable out = add(x, y);
  const Dim n(scalar("n", DType::int64));
  const Dim m(scalar("m", DType::int64));
  const Dim p(scalar("p", DType::int64));
  const std::vector<ShapeDims> shapes =
      out.owner()->op->infer_shape(*out.owner(), {{n, m, Dim(1)}, {p, Dim(4), Dim(1)}});
  REQUIRE(shapes.size() == 1);
  REQUIRE(shapes[0].size() == 3);
  CHECK(shapes[0][0].is_symbolic());
  CHECK(shapes[0][0].variable() == n.variable());  // the first of two symbolic dims
  CHECK(shapes[0][1].is_constant());
  CHECK(shapes[0][1].value() == 4);  // the known one
  CHECK(shapes[0][2].is_constant());
  CHECK(shapes[0][2].value() == 1);

  const Variable v = tensor("v", DType::float32, {1, std::nullopt});
  const Variable s = mul(v, scalar("t", DType::float32));
  const auto vs = s.owner()->op->infer_shape(*s.owner(), {{Dim(1), Dim::unknown()}, {}});
  CHECK(vs[0][0].value() == 1);
  CHECK(vs[0][1].is_unknown());
}

// ---------------------------------------------------------------------------------------------
// Errors

TEST_CASE("elemwise build-time ShapeError names the inputs and the axis", "[elemwise]") {
  const Variable x = tensor("x", DType::float32, {3, 4});
  const Variable y = tensor("y", DType::float32, {5});
  REQUIRE_THROWS_AS(add(x, y), ShapeError);
  try {
    add(x, y);
  } catch (const ShapeError& e) {
    const std::string message = e.what();
    INFO(message);
    CHECK(contains(message, "Elemwise{add}"));
    CHECK(contains(message, "'x'"));
    CHECK(contains(message, "'y'"));
    CHECK(contains(message, "float32[3, 4]"));
    CHECK(contains(message, "float32[5]"));
    CHECK(contains(message, "output axis 1"));
  }
  // Casting does not hide the names: the check runs on the operands as given.
  const Variable i = tensor("i", DType::int32, {2, 3});
  try {
    mul(i, tensor("g", DType::float64, {3, 2}));
    FAIL("no exception");
  } catch (const ShapeError& e) {
    INFO(e.what());
    CHECK(contains(e.what(), "'i'"));
    CHECK(contains(e.what(), "'g'"));
  }
  REQUIRE_THROWS_AS(where(tensor("c", DType::boolean, {2}), x, x), ShapeError);
  REQUIRE_NOTHROW(
      add(tensor("a", DType::float32, {std::nullopt, 4}), tensor("b", DType::float32, {4})));
}

TEST_CASE("elemwise run-time ShapeError", "[elemwise]") {
  SECTION("a runtime 1 where the static dim was unknown") {
    const Variable x = tensor("x", DType::float32, {std::nullopt, 4});
    const Variable y = tensor("y", DType::float32, {3, 4});
    const Variable out = add(x, y);
    const auto* op = dynamic_cast<const Elemwise*>(out.owner()->op.get());
    REQUIRE(op != nullptr);
    std::vector<Tensor> result;
    try {
      op->perform({Tensor::zeros(DType::float32, {1, 4}), Tensor::zeros(DType::float32, {3, 4})},
                  result);
      FAIL("no exception");
    } catch (const ShapeError& e) {
      const std::string message = e.what();
      INFO(message);
      CHECK(contains(message, "Elemwise{add}"));
      CHECK(contains(message, "[1, 4]"));
      CHECK(contains(message, "[3, 4]"));
      CHECK(contains(message, "declare that dim as 1"));
    }
    // The same values are fine where the type says the dim is 1.
    const Variable x1 = tensor("x1", DType::float32, {1, 4});
    const Variable ok = add(x1, y);
    const auto* ok_op = dynamic_cast<const Elemwise*>(ok.owner()->op.get());
    ok_op->perform({Tensor::zeros(DType::float32, {1, 4}), Tensor::full(DType::float32, {3, 4}, 2)},
                   result);
    CHECK(result[0].shape() == Shape{3, 4});
  }
  SECTION("sizes that disagree") {
    REQUIRE_THROWS_AS(run_op(ScalarOp::add, {Tensor::zeros(DType::float64, {3}),
                                             Tensor::zeros(DType::float64, {4})}),
                      ShapeError);
    try {
      run_op(ScalarOp::mul,
             {Tensor::zeros(DType::float64, {2, 3}), Tensor::zeros(DType::float64, {2, 5})});
      FAIL("no exception");
    } catch (const ShapeError& e) {
      INFO(e.what());
      CHECK(contains(e.what(), "Elemwise{mul}"));
      CHECK(contains(e.what(), "output axis 1"));
      CHECK_FALSE(contains(e.what(), "declare that dim"));
    }
  }
  SECTION("through a compiled function") {
    const Variable x = tensor("x", DType::float64, {std::nullopt});
    const Variable y = tensor("y", DType::float64, {std::nullopt});
    REQUIRE_THROWS_AS(
        testing::eval(add(x, y), {x, y},
                      {Tensor::zeros(DType::float64, {1}), Tensor::zeros(DType::float64, {3})}),
        ShapeError);
  }
}

TEST_CASE("elemwise float-only op on an integer input is a TypeError", "[elemwise]") {
  const Variable x = vector("x", DType::int32);
  REQUIRE_THROWS_AS(exp(x), TypeError);
  try {
    exp(x);
  } catch (const TypeError& e) {
    CHECK(std::string(e.what()) ==
          "Elemwise{exp}: input 0 ('x') has dtype int32; exp needs a floating-point input "
          "(float16, float32, float64); cast it first");
  }
  for (const auto& f : std::vector<std::function<Variable(const Variable&)>>{
           [](const Variable& v) { return log(v); }, [](const Variable& v) { return log1p(v); },
           [](const Variable& v) { return sqrt(v); }, [](const Variable& v) { return sigmoid(v); },
           [](const Variable& v) { return tanh(v); },
           [](const Variable& v) { return softplus(v); }}) {
    REQUIRE_THROWS_AS(f(x), TypeError);
    REQUIRE_THROWS_AS(f(vector("b", DType::boolean)), TypeError);
  }
  // perform checks too, for direct callers.
  REQUIRE_THROWS_AS(run_op(ScalarOp::sqrt, {Tensor::zeros(DType::int64, {2})}), TypeError);
}

TEST_CASE("elemwise logical op on a float input is a TypeError", "[elemwise]") {
  const Variable f = vector("f", DType::float32);
  const Variable b = vector("b", DType::boolean);
  REQUIRE_THROWS_AS(logical_and(b, f), TypeError);
  REQUIRE_THROWS_AS(logical_not(f), TypeError);
  try {
    logical_or(b, f);
    FAIL("no exception");
  } catch (const TypeError& e) {
    INFO(e.what());
    CHECK(contains(e.what(), "Elemwise{logical_or}: input 1 ('f') has dtype float32"));
    CHECK(contains(e.what(), "bool"));
  }
  try {
    where(f, f, f);
    FAIL("no exception");
  } catch (const TypeError& e) {
    INFO(e.what());
    CHECK(contains(e.what(), "Elemwise{where}: input 0 ('f')"));
    CHECK(contains(e.what(), "must be bool"));
  }
  // The raw op takes no mixed dtypes.
  REQUIRE_THROWS_AS(elemwise(ScalarOp::add, {f, vector("d", DType::float64)}), TypeError);
  REQUIRE_THROWS_AS(run_op(ScalarOp::add, {Tensor::zeros(DType::float32, {2}),
                                           Tensor::zeros(DType::float64, {2})}),
                    TypeError);
}

TEST_CASE("elemwise integer division by zero is a ValueError", "[elemwise]") {
  const Tensor a = Tensor::from_vector<std::int32_t>({4, 5, 6}, {3});
  const Tensor b = Tensor::from_vector<std::int32_t>({1, 0, 2}, {3});
  for (ScalarOp op : {ScalarOp::int_div, ScalarOp::mod}) {
    try {
      run_op(op, {a, b});
      FAIL("no exception");
    } catch (const ValueError& e) {
      INFO(e.what());
      CHECK(contains(e.what(), std::string("integer division by zero in Elemwise{") +
                                   std::string(scalar_op_name(op)) + "}"));
    }
  }
  REQUIRE_THROWS_AS(run_op(ScalarOp::pow, {a, Tensor::scalar(DType::int32, -1)}), ValueError);
  // Float division by zero is IEEE arithmetic, not an error.
  const auto q = run_op(ScalarOp::int_div, {a.cast(DType::float64), b.cast(DType::float64)})
                     .to_vector<double>();
  CHECK(std::isinf(q[1]));
}

// ---------------------------------------------------------------------------------------------
// Gradients

namespace {

using Fn = std::function<Variable(const std::vector<Variable>&)>;

Tensor rand64(const Shape& shape, std::uint64_t seed, double low = -1, double high = 1) {
  return random_tensor(DType::float64, shape, seed, low, high);
}

// Values of magnitude in [0.3, 1.3] with random signs: away from the kinks of abs and relu.
Tensor away_from_zero(const Shape& shape, std::uint64_t seed) {
  const Tensor magnitude = rand64(shape, seed, 0.3, 1.3);
  const Tensor signs = random_tensor(DType::boolean, shape, seed + 1000);
  const Tensor minus = run_op(ScalarOp::neg, {magnitude});
  return run_op(ScalarOp::where, {signs, magnitude, minus});
}

}  // namespace

TEST_CASE("elemwise gradients of unary ops", "[elemwise]") {
  struct Case {
    ScalarOp op;
    Tensor point;
  };
  const Shape shape{3, 4};
  const std::vector<Case> cases = {
      {ScalarOp::neg, rand64(shape, 1)},
      {ScalarOp::abs, away_from_zero(shape, 2)},
      {ScalarOp::square, rand64(shape, 3)},
      {ScalarOp::exp, rand64(shape, 4)},
      {ScalarOp::log, rand64(shape, 5, 0.5, 2)},
      {ScalarOp::log1p, rand64(shape, 6, -0.5, 2)},
      {ScalarOp::sqrt, rand64(shape, 7, 0.5, 2)},
      {ScalarOp::relu, away_from_zero(shape, 8)},
      {ScalarOp::sigmoid, rand64(shape, 9, -4, 4)},
      {ScalarOp::tanh, rand64(shape, 10, -2, 2)},
      {ScalarOp::softplus, rand64(shape, 11, -4, 4)},
  };
  for (const Case& c : cases) {
    INFO(scalar_op_name(c.op));
    const ScalarOp op = c.op;
    verify_grad([op](const std::vector<Variable>& in) { return elemwise(op, {in[0]}); }, {c.point});
    CHECK(testing::check_rop(
              [op](const std::vector<Variable>& in) { return elemwise(op, {in[0]}); }, {c.point})
              .empty());
  }
}

TEST_CASE("elemwise gradients of binary ops", "[elemwise]") {
  struct Case {
    ScalarOp op;
    Tensor a, b;
  };
  const std::vector<Case> cases = {
      {ScalarOp::add, rand64({3, 4}, 1), rand64({3, 4}, 2)},
      {ScalarOp::sub, rand64({3, 4}, 3), rand64({3, 4}, 4)},
      {ScalarOp::mul, rand64({3, 4}, 5), rand64({3, 4}, 6)},
      {ScalarOp::true_div, rand64({3, 4}, 7), away_from_zero({3, 4}, 8)},
      // a / b stays in (0.2, 0.8) + k: far from the jumps of floor.
      {ScalarOp::mod,
       run_op(ScalarOp::add,
              {rand64({3, 4}, 9, 0.2, 0.8), Tensor::from_vector<double>({-2, -1, 0, 3}, {4})}),
       Tensor::scalar(DType::float64, 1.0)},
      {ScalarOp::pow, rand64({3, 4}, 11, 0.5, 2), rand64({3, 4}, 12, -2, 2)},
      {ScalarOp::maximum, rand64({3, 4}, 13), rand64({3, 4}, 14)},
      {ScalarOp::minimum, rand64({3, 4}, 15), rand64({3, 4}, 16)},
  };
  for (const Case& c : cases) {
    INFO(scalar_op_name(c.op));
    const ScalarOp op = c.op;
    const Fn fn = [op](const std::vector<Variable>& in) { return elemwise(op, {in[0], in[1]}); };
    verify_grad(fn, {c.a, c.b});
    CHECK(testing::check_rop(fn, {c.a, c.b}).empty());
  }
}

TEST_CASE("elemwise gradients sum over broadcast axes", "[elemwise]") {
  SECTION("add of (3,1) and (1,4)") {
    const Fn fn = [](const std::vector<Variable>& in) { return add(in[0], in[1]); };
    verify_grad(fn, {rand64({3, 1}, 1), rand64({1, 4}, 2)});
    CHECK(testing::check_rop(fn, {rand64({3, 1}, 1), rand64({1, 4}, 2)}).empty());
  }
  SECTION("mul with rank padding") {
    const Fn fn = [](const std::vector<Variable>& in) { return mul(in[0], in[1]); };
    verify_grad(fn, {rand64({2, 3, 4}, 3), rand64({4}, 4)});
    verify_grad(fn, {rand64({}, 5), rand64({2, 3}, 6)});
    CHECK(testing::check_rop(fn, {rand64({2, 3, 4}, 3), rand64({4}, 4)}).empty());
  }
  SECTION("sub, true_div, pow, maximum with broadcasting") {
    for (ScalarOp op :
         {ScalarOp::sub, ScalarOp::true_div, ScalarOp::pow, ScalarOp::maximum, ScalarOp::minimum}) {
      INFO(scalar_op_name(op));
      const Fn fn = [op](const std::vector<Variable>& in) { return elemwise(op, {in[0], in[1]}); };
      const std::vector<Tensor> points = {rand64({3, 1}, 7, 0.5, 2), rand64({1, 4}, 8, 0.5, 2)};
      verify_grad(fn, points);
      CHECK(testing::check_rop(fn, points).empty());
    }
  }
  SECTION("one operand a constant: the tangent is broadcast to the output") {
    const Tensor row = rand64({1, 4}, 9);
    const Fn fn = [row](const std::vector<Variable>& in) { return add(in[0], constant(row)); };
    verify_grad(fn, {rand64({3, 1}, 10)});
    CHECK(testing::check_rop(fn, {rand64({3, 1}, 10)}).empty());
    const Fn minus = [row](const std::vector<Variable>& in) { return sub(constant(row), in[0]); };
    CHECK(testing::check_rop(minus, {rand64({3, 1}, 11)}).empty());
  }
}

TEST_CASE("elemwise where gradient goes to the selected branch", "[elemwise]") {
  const Tensor cond = random_tensor(DType::boolean, {3, 1}, 5);
  const Fn fn = [cond](const std::vector<Variable>& in) {
    return where(constant(cond), in[0], in[1]);
  };
  verify_grad(fn, {rand64({3, 4}, 1), rand64({4}, 2)});
  CHECK(testing::check_rop(fn, {rand64({3, 4}, 1), rand64({4}, 2)}).empty());

  // The condition gets no gradient: it is disconnected.
  const Variable c = matrix("c", DType::boolean);
  const Variable a = matrix("a", DType::float64);
  const Variable b = matrix("b", DType::float64);
  const Variable out = where(c, a, b);
  const auto grads = out.owner()->op->grad(out.owner()->inputs, {out}, {out});
  REQUIRE(grads.size() == 3);
  CHECK_FALSE(grads[0].defined());
  CHECK(grads[1].defined());
  CHECK(grads[2].defined());
}

TEST_CASE("elemwise maximum ties send the gradient to the first operand", "[elemwise]") {
  const Variable a = vector("a", DType::float64);
  const Variable b = vector("b", DType::float64);
  const Variable cost = sum(maximum(a, b));
  const auto grads = grad(cost, {a, b});
  const Tensor va = Tensor::from_vector<double>({1, 2, 3}, {3});
  const Tensor vb = Tensor::from_vector<double>({1, 5, 0}, {3});
  const auto values = testing::run_graph({a, b}, grads, {va, vb});
  CHECK(values[0].to_vector<double>() == std::vector<double>{1, 0, 1});
  CHECK(values[1].to_vector<double>() == std::vector<double>{0, 1, 0});
}

TEST_CASE("elemwise non-differentiable inputs are disconnected", "[elemwise]") {
  const Variable f = vector("f", DType::float64);
  const Variable g = vector("g", DType::float64);
  for (ScalarOp op : {ScalarOp::lt, ScalarOp::eq, ScalarOp::int_div}) {
    INFO(scalar_op_name(op));
    const Variable out = elemwise(op, {f, g});
    const auto grads = out.owner()->op->grad(out.owner()->inputs, {out}, {out});
    CHECK_FALSE(grads[0].defined());
    CHECK_FALSE(grads[1].defined());
    const auto tangents = out.owner()->op->r_op(out.owner()->inputs, {out}, {f, g});
    CHECK_FALSE(tangents[0].defined());
  }
  const Variable s = sign(f);
  CHECK_FALSE(s.owner()->op->grad(s.owner()->inputs, {s}, {s})[0].defined());

  // Integer operands of an op with a float output get no gradient.
  const Variable i = vector("i", DType::int32);
  const Variable mixed = elemwise(ScalarOp::mul, {f, cast(i, DType::float64)});
  const Variable cast_node = mixed.owner()->inputs[1];
  const auto cast_grads = cast_node.owner()->op->grad(cast_node.owner()->inputs, {cast_node}, {f});
  CHECK_FALSE(cast_grads[0].defined());

  // The cost does not depend on f through a comparison.
  const Variable cost = sum(cast(gt(f, g), DType::float64));
  REQUIRE_THROWS_AS(grad(cost, f), ValueError);
}

TEST_CASE("cast gradient and R-operator", "[elemwise]") {
  const Variable x = vector("x", DType::float64);
  const Variable cost = sum(cast(x, DType::float32));
  const Variable gx = grad(cost, x);
  CHECK(gx.dtype() == DType::float64);
  const Tensor value = rand64({5}, 3);
  CHECK(testing::eval(gx, {x}, {value}).to_vector<double>() == std::vector<double>{1, 1, 1, 1, 1});
  const Variable v = vector("v", DType::float64);
  const Variable r = Rop({cast(x, DType::float32)}, {x}, {v}).front();
  CHECK(r.dtype() == DType::float32);
  CHECK(testing::eval(r, {x, v}, {value, value}).to_vector<double>() ==
        value.cast(DType::float32).to_vector<double>());
}

TEST_CASE("elemwise gradients keep the input dtype", "[elemwise]") {
  for (DType dtype : {DType::float32, DType::float16}) {
    INFO(dtype_name(dtype));
    const Variable x = tensor("x", dtype, {3, 1});
    const Variable y = tensor("y", dtype, {1, 4});
    const Variable cost = sum(mul(x, y));
    const auto grads = grad(cost, {x, y});
    CHECK(grads[0].type() == x.type());
    CHECK(grads[1].type() == y.type());
    const Tensor vx = Tensor::from_vector<double>({1, 2, 3}, {3, 1}).cast(dtype);
    const Tensor vy = Tensor::from_vector<double>({1, 1, 2, 2}, {1, 4}).cast(dtype);
    const auto values = testing::run_graph({x, y}, grads, {vx, vy});
    CHECK(values[0].to_vector<double>() == std::vector<double>{6, 6, 6});
    CHECK(values[1].to_vector<double>() == std::vector<double>{6, 6, 6, 6});
  }
}

TEST_CASE("elemwise graphs compile and run", "[elemwise]") {
  const Variable x = tensor("x", DType::int32, {2, 3});
  const Variable y = tensor("y", DType::float32, {3});
  const Variable out = (x + y) * 2.0 - x / 2.0;
  CHECK(out.dtype() == DType::float32);
  const Tensor vx = Tensor::from_vector<std::int32_t>({1, 2, 3, 4, 5, 6}, {2, 3});
  const Tensor vy = Tensor::from_vector<float>({0.5f, -1.0f, 2.0f}, {3});
  const Tensor result = testing::eval(out, {x, y}, {vx, vy});
  const std::vector<double> expected = {(1 + 0.5) * 2 - 0.5, (2 - 1.0) * 2 - 1.0,
                                        (3 + 2.0) * 2 - 1.5, (4 + 0.5) * 2 - 2.0,
                                        (5 - 1.0) * 2 - 2.5, (6 + 2.0) * 2 - 3.0};
  CHECK(result.to_vector<double>() == expected);
}
