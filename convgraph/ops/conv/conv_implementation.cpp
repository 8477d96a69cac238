#include "convgraph/ops/conv/conv_implementation.hpp"

#include <fmt/format.h>

#include "convgraph/base/error.hpp"
#include "convgraph/graph/op.hpp"

namespace convgraph {

ConvSignature ConvSignature::of(const Node& node) {
  const auto* conv = dynamic_cast<const AbstractConv*>(node.op.get());
  if (conv == nullptr) {
    throw ValueError(
        fmt::format("ConvSignature::of: {} is not an abstract convolution", node.op->str()));
  }
  ConvSignature signature;
  signature.direction = conv->direction();
  signature.params = conv->params();
  signature.dtype = node.output_data[0].type.dtype;
  signature.device = node.output_data[0].type.device;
  for (const Variable& in : node.inputs) signature.inputs.push_back(in.type());
  signature.output = node.output_data[0].type;
  return signature;
}

std::string ConvSignature::direction_name() const {
  switch (direction) {
    case ConvDirection::forward:
      return "forward";
    case ConvDirection::grad_inputs:
      return "grad_inputs";
    case ConvDirection::grad_weights:
      return "grad_weights";
  }
  return "?";
}

}  // namespace convgraph
