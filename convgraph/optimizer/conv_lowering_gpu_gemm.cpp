// conv_gemm on the GPU: each abstract convolution on a CUDA device becomes the GpuCorrMM op of its
// own direction, with the same inputs and parameters (the flip happens inside the op) and the flag
// dnn.conv.allow_tf32 (TF32 tensor cores for float32 GEMMs). The performance rewrites of the
// original (a 'full' forward as a gradInputs, a forward as a transposed gradWeights) are
// alternatives for the meta-optimizer, not rules.
#include <fmt/format.h>

#include <memory>

#include "convgraph/build_config.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/optimizer/conv_lowering_gpu.hpp"

#if CONVGRAPH_HAVE_CUDA
#include "convgraph/ops/gpu/gpu_corrmm.hpp"
#endif

namespace convgraph {

std::vector<Variable> lower_conv_to_gpu_corrmm(Node& node, const PassContext& ctx) {
  const auto* conv = dynamic_cast<const AbstractConv*>(node.op.get());
  if (conv == nullptr || !node.output_data[0].type.device.is_cuda()) return {};
#if CONVGRAPH_HAVE_CUDA
  const DType dtype = node.output_data[0].type.dtype;
  if (!is_float(dtype)) {
    ctx.decline(node, "conv_gemm (GpuCorrMM)",
                fmt::format("dtype {}: GpuCorrMM supports float16, float32 and float64",
                            dtype_name(dtype)));
    return {};
  }
  for (std::size_t i = 0; i < node.inputs.size() && i < 2; ++i) {
    if (!node.inputs[i].type().device.is_cuda()) {
      ctx.decline(node, "conv_gemm (GpuCorrMM)",
                  fmt::format("input {} is on {}, not on the GPU", node.inputs[i].label(),
                              node.inputs[i].type().device.str()));
      return {};
    }
  }
  // dnn.conv.allow_tf32 governs every float32 convolution on the GPU, cuDNN's or not.
  const bool allow_tf32 = ctx.config.get_bool("dnn.conv.allow_tf32");
  return {convgraph::apply(
      std::make_shared<GpuCorrMM>(conv->direction(), conv->params(), allow_tf32), node.inputs)};
#else
  ctx.decline(node, "conv_gemm (GpuCorrMM)", "CUDA is not built into this convgraph");
  return {};
#endif
}

}  // namespace convgraph
