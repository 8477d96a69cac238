#include "convgraph/ops/conv/reference_conv_op.hpp"

#include <fmt/format.h>

#include "convgraph/base/error.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/ops/kernel_op.hpp"

namespace convgraph {

std::string ReferenceConv::name() const {
  std::string abstract_name = abstract().name();  // "AbstractConv2d_gradInputs"
  const std::string prefix = "Abstract";
  if (abstract_name.rfind(prefix, 0) == 0) abstract_name.erase(0, prefix.size());
  return "Reference" + abstract_name;
}

void ReferenceConv::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  abstract().perform(inputs, outputs);
}

std::shared_ptr<const Kernel> ReferenceConv::make_kernel(const Node& node) const {
  return std::make_shared<PerformKernel>(node.op);
}

void ReferenceConv::check_input_types(const std::vector<Variable>& inputs) const {
  for (std::size_t i = 0; i < inputs.size() && i < 2; ++i) {
    if (!inputs[i].type().device.is_cpu()) {
      throw UnsupportedError(fmt::format("{}: input {} is on {}; the reference runs on the CPU",
                                         name(), inputs[i].label(), inputs[i].type().device.str()));
    }
  }
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
