#include "convgraph/graph/op.hpp"

#include <fmt/format.h>

namespace convgraph {

std::vector<ShapeDims> Op::infer_shape(const Node& node,
                                       const std::vector<ShapeDims>& /*input_shapes*/) const {
  std::vector<ShapeDims> out;
  for (const auto& data : node.output_data) out.push_back(dims_of(data.type));
  return out;
}

std::vector<Variable> Op::grad(const std::vector<Variable>& inputs,
                               const std::vector<Variable>& /*outputs*/,
                               const std::vector<Variable>& /*output_grads*/) const {
  std::vector<Variable> result;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    result.push_back(
        grad_undefined(*this, static_cast<int>(i), inputs[i], "the op does not define a gradient"));
  }
  return result;
}

std::vector<Variable> Op::r_op(const std::vector<Variable>& /*inputs*/,
                               const std::vector<Variable>& /*outputs*/,
                               const std::vector<Variable>& /*eval_points*/) const {
  throw UnsupportedError(fmt::format("{} does not implement the R-operator (forward mode)", str()));
}

}  // namespace convgraph
