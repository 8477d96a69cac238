#include <fmt/format.h>

#include "convgraph/build_config.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/optimizer/conv_lowering_gpu.hpp"

namespace convgraph {

std::vector<Variable> lower_conv_to_cudnn(Node& node, const PassContext& ctx) {
  const auto* conv = dynamic_cast<const AbstractConv*>(node.op.get());
  if (conv == nullptr || !node.output_data[0].type.device.is_cuda()) return {};
  ctx.decline(node, "conv_dnn (cuDNN)", "not implemented yet");
  return {};
}

}  // namespace convgraph
