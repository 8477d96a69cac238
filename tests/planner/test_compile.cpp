#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
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
}  // namespace

TEST_CASE("compile: a function computes its outputs", "[compile]") {
  Variable x = matrix("x", DType::float64);
  Variable y = matrix("y", DType::float64);
  Function f = compile({x, y}, {add(x, y), mul(x, y)});
  const Tensor a = Tensor::from_vector<double>({1, 2, 3, 4}, {2, 2});
  const Tensor b = Tensor::from_vector<double>({10, 20, 30, 40}, {2, 2});
  const auto out = f({a, b});
  REQUIRE(out.size() == 2);
  REQUIRE(out[0].to_vector<double>() == std::vector<double>{11, 22, 33, 44});
  REQUIRE(out[1].to_vector<double>() == std::vector<double>{10, 40, 90, 160});
}

TEST_CASE("compile: call_async of a function on the CPU runs to the end, like a call",
          "[compile]") {
  Variable x = matrix("x", DType::float64);
  Variable y = matrix("y", DType::float64);
  Function f = compile({x, y}, {add(x, y)});
  const Tensor a = Tensor::from_vector<double>({1, 2, 3, 4}, {2, 2});
  const Tensor b = Tensor::from_vector<double>({10, 20, 30, 40}, {2, 2});
  const auto out = f.call_async({a, b});
  REQUIRE(out.size() == 1);
  REQUIRE(out[0].to_vector<double>() == std::vector<double>{11, 22, 33, 44});
  f.synchronize();  // nothing queued: returns at once
  CHECK(f.stream(Device::cpu()) == nullptr);
  CHECK(f.plan().devices.empty());
  CHECK_THROWS_AS(Function().call_async({a, b}), ValueError);
}

TEST_CASE("compile: bad arguments name the input and what was expected", "[compile]") {
  Variable x = tensor("x", DType::float32, {std::nullopt, 3});
  Variable y = vector("y", DType::float32);
  Function f = compile({x, y}, {add(x, y)});
  const Tensor good_x = Tensor::zeros(DType::float32, {2, 3});
  const Tensor good_y = Tensor::zeros(DType::float32, {3});
  REQUIRE(f({good_x, good_y})[0].shape() == Shape{2, 3});

  std::string msg = message_of([&] { f({good_x}); });
  REQUIRE(msg.find("1 inputs, expected 2") != std::string::npos);
  REQUIRE_THROWS_AS(f({good_x}), ValueError);

  msg = message_of([&] { f({good_x, Tensor::zeros(DType::float64, {3})}); });
  REQUIRE(msg.find("'y'") != std::string::npos);
  REQUIRE(msg.find("float64") != std::string::npos);
  REQUIRE_THROWS_AS(f({good_x, Tensor::zeros(DType::float64, {3})}), TypeError);

  REQUIRE_THROWS_AS(f({Tensor::zeros(DType::float32, {2, 3, 1}), good_y}), TypeError);

  msg = message_of([&] { f({Tensor::zeros(DType::float32, {2, 4}), good_y}); });
  REQUIRE(msg.find("'x'") != std::string::npos);
  REQUIRE(msg.find("dim 1 must be 3") != std::string::npos);
  REQUIRE_THROWS_AS(f({Tensor::zeros(DType::float32, {2, 4}), good_y}), ShapeError);
  REQUIRE_THROWS_AS(f({Tensor(), good_y}), ValueError);
}

TEST_CASE("compile: outputs never alias the caller's buffers", "[compile]") {
  Variable x = vector("x", DType::float32);
  Function f = compile({x}, {x});
  const Tensor a = Tensor::from_vector<float>({1, 2}, {2});
  const Tensor out = f({a})[0];
  REQUIRE_FALSE(out.shares_storage_with(a));
  REQUIRE(out.to_vector<float>() == std::vector<float>{1, 2});
}

TEST_CASE("compile: intermediates are released after their last reader", "[compile]") {
  Variable x = vector("x", DType::float64);
  Variable y = x;
  for (int i = 0; i < 10; ++i) y = exp(neg(y));  // 20 intermediate vectors
  const Tensor a = random_tensor(DType::float64, {1 << 16}, 1);
  const std::int64_t one = (1 << 16) * 8;
  // Without fusion, which would make the chain one node with no intermediates.
  CompileOptions unfused;
  unfused.flags = "optimizer_excluding=fusion";
  Function gc = compile({x}, {y}, unfused);
  gc({a});
  REQUIRE(gc.last_peak_bytes() >= one);
  REQUIRE(gc.last_peak_bytes() <= 3 * one);
  CompileOptions keep_all;
  // Without fusion and the in-place pass: either would run the chain in one buffer, kept or not.
  keep_all.flags = "allow_gc=False,optimizer_excluding=fusion:inplace";
  Function no_gc = compile({x}, {y}, keep_all);
  no_gc({a});
  REQUIRE(no_gc.last_peak_bytes() >= 20 * one);
  REQUIRE(tensor_equal(gc({a})[0], no_gc({a})[0]));
}

TEST_CASE("compile: constant subexpressions are folded, equal nodes merged", "[compile]") {
  Variable x = vector("x", DType::float64);
  Variable k = exp(constant(1.0, DType::float64));
  Variable y = add(mul(x, k), mul(x, k));
  CompileOptions unfused;
  unfused.flags = "optimizer_excluding=fusion";
  Function f = compile({x}, {y}, unfused);
  // exp(1) folded to a constant; the two products merged: mul, add.
  REQUIRE(f.graph().num_nodes() == 2);
  // Fusion then makes them one node.
  REQUIRE(compile({x}, {y}).graph().num_nodes() == 1);
  const auto out = f({Tensor::from_vector<double>({1.0}, {1})})[0].to_vector<double>();
  REQUIRE(out[0] == Approx(2 * std::exp(1.0)));
  CompileOptions fast;
  fast.flags = "mode=FAST_COMPILE";
  REQUIRE(compile({x}, {y}, fast).graph().num_nodes() == 3);
}

TEST_CASE("compile: bad flags are errors", "[compile]") {
  Variable x = vector("x", DType::float64);
  CompileOptions bad;
  bad.flags = "mode=FAST";
  REQUIRE_THROWS_AS(compile({x}, {x}, bad), FlagError);
}
