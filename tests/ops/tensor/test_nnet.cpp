#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "convgraph/ops/tensor/nnet.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
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

// Softmax of each row of a [rows, cols] row-major matrix, in long double.
std::vector<double> softmax_rows(const std::vector<double>& v, int rows, int cols) {
  std::vector<double> out(v.size());
  for (int r = 0; r < rows; ++r) {
    long double total = 0;
    for (int c = 0; c < cols; ++c) total += std::exp(static_cast<long double>(v[r * cols + c]));
    for (int c = 0; c < cols; ++c) {
      out[static_cast<std::size_t>(r * cols + c)] =
          static_cast<double>(std::exp(static_cast<long double>(v[r * cols + c])) / total);
    }
  }
  return out;
}

// The transpose of a [rows, cols] row-major matrix.
std::vector<double> transposed(const std::vector<double>& v, int rows, int cols) {
  std::vector<double> out(v.size());
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) out[static_cast<std::size_t>(c * rows + r)] = v[r * cols + c];
  }
  return out;
}

}  // namespace

TEST_CASE("nnet: softmax and log_softmax match hand-computed values", "[nnet]") {
  const std::vector<double> values{1.0, 2.0, 3.0, -1.0, 0.0, 0.5};  // [2, 3]
  for (DType dtype : {DType::float64, DType::float32}) {
    const double tol = dtype == DType::float64 ? 1e-14 : 1e-6;
    Variable x = matrix("x", dtype);
    const Tensor a = Tensor::from_vector<double>(values, {2, 3}).cast(dtype);
    // Along the last axis: each row.
    const auto expected = softmax_rows(values, 2, 3);
    const auto sm = eval(softmax(x), {x}, {a}).to_vector<double>();
    const auto lsm = eval(log_softmax(x), {x}, {a}).to_vector<double>();
    for (std::size_t i = 0; i < values.size(); ++i) {
      REQUIRE(sm[i] == Approx(expected[i]).epsilon(tol));
      REQUIRE(lsm[i] == Approx(std::log(expected[i])).epsilon(tol));
    }
    // The first row by hand: e^{-2}, e^{-1}, 1 over their sum.
    const double z = std::exp(-2.0) + std::exp(-1.0) + 1.0;
    REQUIRE(sm[2] == Approx(1.0 / z).epsilon(tol));
    // Along axis 0: each column.
    const auto expected0 = transposed(softmax_rows(transposed(values, 2, 3), 3, 2), 3, 2);
    const auto sm0 = eval(softmax(x, 0), {x}, {a}).to_vector<double>();
    for (std::size_t i = 0; i < values.size(); ++i) {
      REQUIRE(sm0[i] == Approx(expected0[i]).epsilon(tol));
    }
  }
}

TEST_CASE("nnet: softmax and log_softmax are stable for large logits", "[nnet]") {
  Variable x = vector("x", DType::float32);
  const Tensor a = Tensor::from_vector<float>({1000.0f, 0.0f, -1000.0f}, {3});
  const auto sm = eval(softmax(x), {x}, {a}).to_vector<double>();
  REQUIRE(sm == std::vector<double>{1.0, 0.0, 0.0});
  const auto lsm = eval(log_softmax(x), {x}, {a}).to_vector<double>();
  REQUIRE(lsm[0] == 0.0);
  REQUIRE(lsm[1] == -1000.0);
  REQUIRE(lsm[2] == -2000.0);
}

TEST_CASE("nnet: cross-entropy losses", "[nnet]") {
  Variable logits = matrix("logits", DType::float64);
  Variable targets = matrix("targets", DType::float64);
  const std::vector<double> l{2.0, 1.0, 0.1, 0.5, 2.5, -1.0};  // [2, 3]
  const std::vector<double> t{1, 0, 0, 0, 0, 1};
  const Tensor a = Tensor::from_vector<double>(l, {2, 3});
  const Tensor b = Tensor::from_vector<double>(t, {2, 3});
  Variable loss = cross_entropy_with_logits(logits, targets);
  REQUIRE(loss.type().rank() == 1);
  const auto got = eval(loss, {logits, targets}, {a, b}).to_vector<double>();
  // -log softmax of the target class.
  const double row0 = -(2.0 - std::log(std::exp(2.0) + std::exp(1.0) + std::exp(0.1)));
  const double row1 = -(-1.0 - std::log(std::exp(0.5) + std::exp(2.5) + std::exp(-1.0)));
  REQUIRE(got[0] == Approx(row0).epsilon(1e-14));
  REQUIRE(got[1] == Approx(row1).epsilon(1e-14));
  // Over axis 0 instead: one loss per column.
  const auto cols = eval(cross_entropy_with_logits(logits, targets, 0), {logits, targets}, {a, b})
                        .to_vector<double>();
  REQUIRE(cols.size() == 3);
  REQUIRE(cols[0] == Approx(-(2.0 - std::log(std::exp(2.0) + std::exp(0.5)))).epsilon(1e-14));
  REQUIRE(cols[1] == 0.0);

  // On probabilities: the same numbers from the softmax output.
  Variable probs = softmax(logits);
  const auto cat =
      eval(categorical_crossentropy(probs, targets), {logits, targets}, {a, b}).to_vector<double>();
  REQUIRE(cat[0] == Approx(row0).epsilon(1e-12));
  REQUIRE(cat[1] == Approx(row1).epsilon(1e-12));

  // Float-only.
  std::string msg =
      message_of([&] { cross_entropy_with_logits(matrix("i", DType::int32), targets); });
  REQUIRE(msg.find("int32") != std::string::npos);
  REQUIRE_THROWS_AS(softmax(vector("i", DType::int64)), TypeError);
  REQUIRE_THROWS_AS(softmax(logits, 2), ValueError);
}

TEST_CASE("nnet: binary cross-entropy with logits", "[nnet]") {
  Variable x = vector("x", DType::float64);
  Variable t = vector("t", DType::float64);
  const std::vector<double> xs{-3.0, -0.5, 0.0, 0.7, 4.0, 100.0, -100.0};
  const std::vector<double> ts{0.0, 1.0, 0.5, 1.0, 0.0, 0.0, 1.0};
  const auto got =
      eval(binary_cross_entropy_with_logits(x, t), {x, t},
           {Tensor::from_vector<double>(xs, {7}), Tensor::from_vector<double>(ts, {7})})
          .to_vector<double>();
  for (std::size_t i = 0; i < 5; ++i) {
    const double p = 1.0 / (1.0 + std::exp(-xs[i]));
    const double expected = -ts[i] * std::log(p) - (1 - ts[i]) * std::log(1 - p);
    REQUIRE(got[i] == Approx(expected).epsilon(1e-12));
  }
  // Where sigmoid saturates, the naive formula gives inf; the loss is ~|x|.
  REQUIRE(got[5] == Approx(100.0).epsilon(1e-14));
  REQUIRE(got[6] == Approx(100.0).epsilon(1e-14));
}

TEST_CASE("nnet: mean squared error", "[nnet]") {
  Variable a = matrix("a", DType::float32);
  Variable b = matrix("b", DType::float32);
  Variable loss = mean_squared_error(a, b);
  REQUIRE(loss.ndim() == 0);
  REQUIRE(loss.dtype() == DType::float32);
  const float got = eval(loss, {a, b},
                         {Tensor::from_vector<float>({1, 2, 3, 4}, {2, 2}),
                          Tensor::from_vector<float>({1, 0, 4, 1}, {2, 2})})
                        .item<float>();
  REQUIRE(got == Approx((0.0 + 4.0 + 1.0 + 9.0) / 4.0).epsilon(1e-7));
}

TEST_CASE("nnet: gradients match finite differences", "[nnet]") {
  const Tensor logits = random_tensor(DType::float64, {3, 4}, 21, -2.0, 2.0);
  Tensor targets = Tensor::zeros(DType::float64, {3, 4});
  for (std::int64_t r = 0; r < 3; ++r) targets.data<double>()[r * 4 + (r + 1) % 4] = 1.0;
  const Tensor soft_targets = random_tensor(DType::float64, {3, 4}, 22, 0.0, 1.0);

  REQUIRE_NOTHROW(
      verify_grad([](const std::vector<Variable>& in) { return softmax(in[0]); }, {logits}));
  REQUIRE_NOTHROW(
      verify_grad([](const std::vector<Variable>& in) { return softmax(in[0], 0); }, {logits}));
  REQUIRE_NOTHROW(
      verify_grad([](const std::vector<Variable>& in) { return log_softmax(in[0]); }, {logits}));
  REQUIRE_NOTHROW(verify_grad(
      [](const std::vector<Variable>& in) { return cross_entropy_with_logits(in[0], in[1]); },
      {logits, targets}));
  REQUIRE_NOTHROW(verify_grad(
      [](const std::vector<Variable>& in) {
        return categorical_crossentropy(softmax(in[0]), in[1]);
      },
      {logits, targets}));
  REQUIRE_NOTHROW(verify_grad(
      [](const std::vector<Variable>& in) {
        return binary_cross_entropy_with_logits(in[0], in[1]);
      },
      {logits, soft_targets}));
  REQUIRE_NOTHROW(
      verify_grad([](const std::vector<Variable>& in) { return mean_squared_error(in[0], in[1]); },
                  {logits, soft_targets}));

  // The gradient of the mean cross-entropy is (softmax - targets) / batch.
  Variable x = matrix("x", DType::float64);
  Variable t = matrix("t", DType::float64);
  Variable g = grad(mean(cross_entropy_with_logits(x, t)), x);
  const auto got = eval(g, {x, t}, {logits, targets}).to_vector<double>();
  const auto sm = softmax_rows(logits.to_vector<double>(), 3, 4);
  const auto tv = targets.to_vector<double>();
  for (std::size_t i = 0; i < got.size(); ++i) {
    REQUIRE(got[i] == Approx((sm[i] - tv[i]) / 3.0).margin(1e-14));
  }
}
