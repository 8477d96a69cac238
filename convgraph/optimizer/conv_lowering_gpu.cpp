#include "convgraph/optimizer/conv_lowering_gpu.hpp"

#include <fmt/format.h>

#include "convgraph/build_config.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"

namespace convgraph {
namespace {

// The abstract convolution NODE computes when it runs on a CUDA device, else null.
const AbstractConv* device_conv(Node& node) {
  const auto* conv = dynamic_cast<const AbstractConv*>(node.op.get());
  if (conv == nullptr || !node.output_data[0].type.device.is_cuda()) return nullptr;
  return conv;
}

}  // namespace

std::vector<Variable> lower_conv_to_cudnn(Node& node, const PassContext& ctx) {
  if (device_conv(node) == nullptr) return {};
  ctx.decline(node, "conv_dnn (cuDNN)", "not implemented yet");
  return {};
}

std::vector<Variable> lower_conv_to_gpu_corrmm(Node& node, const PassContext& ctx) {
  if (device_conv(node) == nullptr) return {};
  ctx.decline(node, "conv_gemm (GpuCorrMM)", "not implemented yet");
  return {};
}

}  // namespace convgraph
