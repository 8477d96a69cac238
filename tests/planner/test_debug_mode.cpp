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
