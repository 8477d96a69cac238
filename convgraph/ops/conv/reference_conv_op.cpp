#include "convgraph/ops/conv/reference_conv_op.hpp"

#include <fmt/format.h>

#include "convgraph/graph/op.hpp"

namespace convgraph {

std::string ReferenceConv::name() const {
  std::string abstract_name = abstract().name();  // "AbstractConv2d_gradInputs"
  const std::string prefix = "Abstract";
  if (abstract_name.rfind(prefix, 0) == 0) abstract_name.erase(0, prefix.size());
  return "Reference" + abstract_name;
}

namespace {

// The reference's direct loops need nothing prepared.
struct Unprepared {};

class ReferenceConvKernel final : public ConcreteConvKernel<Unprepared> {
 public:
  using ConcreteConvKernel::ConcreteConvKernel;

 protected:
  Unprepared prepare(const ConvProblem& problem) const override {
    (void)problem;
    return {};
  }

  Tensor execute(const Unprepared& prepared, const Tensor& a, const Tensor& b,
                 const Shape& spatial) const override {
    (void)prepared;
    switch (direction()) {
      case ConvDirection::forward:
        return reference_conv_forward(params(), a, b);
      case ConvDirection::grad_inputs:
        return reference_conv_grad_inputs(params(), a, b, spatial);
      case ConvDirection::grad_weights:
        break;
    }
    return reference_conv_grad_weights(params(), a, b, spatial);
  }
};

}  // namespace

ConcreteConvRequirements ReferenceConv::requirements() const {
  ConcreteConvRequirements r;
  r.library = "reference";
  r.device = DeviceKind::cpu;
  return r;
}

std::shared_ptr<ConcreteConvKernelBase> ReferenceConv::make_conv_kernel(std::string name) const {
  return std::make_shared<ReferenceConvKernel>(std::move(name), direction(), params(),
                                               requirements());
}

ConvImplementationHooks reference_conv_hooks() {
  ConvImplementationHooks hooks;
  hooks.supports = [](const ConvSignature& s, const Config&) -> std::optional<std::string> {
    if (!is_float(s.dtype)) {
      return fmt::format("dtype {}: the reference computes floating convolutions",
                         dtype_name(s.dtype));
    }
    for (std::size_t i = 0; i < s.inputs.size() && i < 2; ++i) {
      if (!s.inputs[i].device.is_cpu()) {
        return fmt::format("input {} is on {}; the reference runs on the CPU", i,
                           s.inputs[i].device.str());
      }
    }
    return std::nullopt;
  };
  hooks.build = [](const ConvSignature& s, const std::vector<Variable>& inputs, const Config&) {
    return convgraph::apply(std::make_shared<ReferenceConv>(s.direction, s.params), inputs);
  };
  return hooks;
}

}  // namespace convgraph
