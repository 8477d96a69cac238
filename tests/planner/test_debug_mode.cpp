#include <limits>

#include "convgraph/ops/kernel_op.hpp"
#include "convgraph/planner/debug_mode.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;

namespace {

// A test-only "implementation" of addition whose kernel is off by OFFSET.
class OffsetAddOp final : public KernelOp {
 public:
  explicit OffsetAddOp(double offset) : offset_(offset) {}
  std::string name() const override { return "OffsetAdd"; }
  bool equals(const Op& other) const override {
    const auto* o = dynamic_cast<const OffsetAddOp*>(&other);
    return o != nullptr && o->offset_ == offset_;
  }
  std::size_t hash() const override { return std::hash<double>{}(offset_); }
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override {
    return {inputs.at(0).type()};
  }
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override {
    const auto a = inputs[0].to_vector<double>();
    const auto b = inputs[1].to_vector<double>();
    std::vector<double> sum(a.size());
    for (std::size_t i = 0; i < a.size(); ++i) sum[i] = a[i] + b[i] + (i == 2 ? offset_ : 0.0);
    outputs[0] = Tensor::from_vector(sum, inputs[0].shape()).cast(inputs[0].dtype());
  }
  std::shared_ptr<const Kernel> make_kernel(const Node& node) const override {
    return std::make_shared<PerformKernel>(node.op);
  }
  std::shared_ptr<const Op> reference_op() const override {
    Variable a = vector("a", DType::float64);
    return add(a, a).owner()->op;  // Elemwise{add}
  }

 private:
  double offset_;
};

}  // namespace

TEST_CASE("DebugMode: a wrong kernel is caught and reported", "[debugmode]") {
  Variable a = vector("a", DType::float64);
  Variable b = vector("b", DType::float64);
  Variable wrong = exp(apply(std::make_shared<OffsetAddOp>(1e-3), {a, b}));
  Variable right = exp(apply(std::make_shared<OffsetAddOp>(0.0), {a, b}));
  const Tensor x = Tensor::from_vector<double>({1, 2, 3, 4}, {4});
  CompileOptions debug;
  debug.flags = "mode=DebugMode";
  // Outside DebugMode the error goes unnoticed.
  REQUIRE_NOTHROW(compile({a, b}, {wrong})({x, x}));
  REQUIRE_NOTHROW(compile({a, b}, {right}, debug)({x, x}));
  try {
    compile({a, b}, {wrong}, debug)({x, x});
    FAIL("DebugMode did not catch the wrong kernel");
  } catch (const DebugModeError& e) {
    const std::string msg = e.what();
    INFO(msg);
    REQUIRE(msg.find("OffsetAdd") != std::string::npos);
    REQUIRE(msg.find("Elemwise{add}") != std::string::npos);
    REQUIRE(msg.find("largest error 0.001") != std::string::npos);
    REQUIRE(msg.find("flat index 2") != std::string::npos);
    REQUIRE(msg.find("|a [id") != std::string::npos);  // the node's debugprint
  }
  // Looser tolerances from the flags accept it.
  CompileOptions loose;
  loose.flags = "mode=DebugMode,debugmode.atol=0.01";
  REQUIRE_NOTHROW(compile({a, b}, {wrong}, loose)({x, x}));
}

namespace {

// The reference of PassFirstOp: its second input.
class TakeSecondOp final : public Op {
 public:
  std::string name() const override { return "TakeSecond"; }
  bool equals(const Op& other) const override {
    return dynamic_cast<const TakeSecondOp*>(&other) != nullptr;
  }
  std::size_t hash() const override { return 17; }
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override {
    return {inputs.at(1).type()};
  }
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override {
    outputs[0] = inputs[1].clone();
  }
};

// A test-only "implementation" that returns its first input where the reference returns the
// second: DebugMode then compares any two tensors the test chooses.
class PassFirstOp final : public KernelOp {
 public:
  std::string name() const override { return "PassFirst"; }
  bool equals(const Op& other) const override {
    return dynamic_cast<const PassFirstOp*>(&other) != nullptr;
  }
  std::size_t hash() const override { return 23; }
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override {
    return {inputs.at(0).type()};
  }
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override {
    outputs[0] = inputs[0].clone();
  }
  std::shared_ptr<const Kernel> make_kernel(const Node& node) const override {
    return std::make_shared<PerformKernel>(node.op);
  }
  std::shared_ptr<const Op> reference_op() const override {
    return std::make_shared<TakeSecondOp>();
  }
};

// Runs PassFirst under DebugMode on ACTUAL and EXPECTED (shape SHAPE); returns the error message,
// or "" when DebugMode accepts the pair.
std::string debug_compare(const std::vector<double>& actual, const std::vector<double>& expected,
                          const Shape& shape) {
  const Variable a = tensor("a", DType::float64, StaticShape(shape.size()));
  const Variable e = tensor("e", DType::float64, StaticShape(shape.size()));
  CompileOptions debug;
  debug.flags = "mode=DebugMode";
  const Function f = compile({a, e}, {apply(std::make_shared<PassFirstOp>(), {a, e})}, debug);
  try {
    f({Tensor::from_vector(actual, shape), Tensor::from_vector(expected, shape)});
  } catch (const DebugModeError& error) {
    return error.what();
  }
  return "";
}

}  // namespace

TEST_CASE("DebugMode: equal infinities and NaN on both sides agree", "[debugmode]") {
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK(debug_compare({inf, -inf, nan, 1.0}, {inf, -inf, nan, 1.0}, {4}).empty());
  CHECK(debug_compare({inf, -inf, -nan}, {inf, -inf, nan}, {3}).empty());
  // A non-finite value on one side only, or infinities of opposite signs, disagree.
  CHECK_FALSE(debug_compare({inf}, {-inf}, {1}).empty());
  CHECK_FALSE(debug_compare({inf}, {1e300}, {1}).empty());
  CHECK_FALSE(debug_compare({1.0}, {-inf}, {1}).empty());
  CHECK_FALSE(debug_compare({nan}, {1.0}, {1}).empty());
  CHECK_FALSE(debug_compare({1.0}, {nan}, {1}).empty());
  CHECK_FALSE(debug_compare({nan}, {inf}, {1}).empty());
}

TEST_CASE("DebugMode: a mismatch is reported at its index", "[debugmode]") {
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // Infinities and NaNs everywhere else, on both sides; element [1, 2] differs.
  std::vector<double> expected = {inf, -inf, nan, 0, 1, 2, 3, inf, -inf, nan, 5, 6};
  std::vector<double> actual = expected;
  actual[6] = 3.5;
  std::string m = debug_compare(actual, expected, {3, 4});
  INFO(m);
  CHECK(m.find("at index [1, 2] (flat index 6;") != std::string::npos);
  CHECK(m.find("largest error 0.5") != std::string::npos);
  CHECK(m.find("implementation 3.5, reference 3") != std::string::npos);
  // Of a finite error and a non-finite one, the non-finite one is the largest.
  actual[10] = inf;
  m = debug_compare(actual, expected, {3, 4});
  CHECK(m.find("at index [2, 2] (flat index 10;") != std::string::npos);
  CHECK(m.find("largest error inf") != std::string::npos);
  actual[10] = 5;
  actual[11] = nan;
  m = debug_compare(actual, expected, {3, 4});
  CHECK(m.find("at index [2, 3] (flat index 11;") != std::string::npos);
  // Rank 3, the last element.
  std::vector<double> cube(24, inf), other(24, inf);
  other[23] = 0;
  m = debug_compare(cube, other, {2, 3, 4});
  CHECK(m.find("at index [1, 2, 3] (flat index 23;") != std::string::npos);
}
