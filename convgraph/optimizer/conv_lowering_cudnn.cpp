// conv_dnn on the GPU: AbstractConv nodes on a CUDA device -> GpuDnnConv (spec 7.5, 9.1).
// Compiled in every build: without cuDNN the pass declines, or refuses dnn.enabled=True.
#include <fmt/format.h>

#include <memory>

#include "convgraph/base/error.hpp"
#include "convgraph/build_config.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/optimizer/conv_lowering_gpu.hpp"
#if CONVGRAPH_HAVE_CUDNN
#include "convgraph/ops/gpu/cudnn_conv.hpp"
#include "convgraph/runtime/cuda/cudnn_handle.hpp"
#endif

namespace convgraph {
namespace {

constexpr const char* kCandidate = "conv_dnn (cuDNN)";

[[noreturn]] void refuse_enabled(const std::string& why) {
  throw DeviceError(fmt::format(
      "you enabled cuDNN (dnn.enabled=True) but it cannot be used: {}. Set dnn.enabled=auto to "
      "fall back to GpuCorrMM (conv_gemm) where cuDNN is unusable",
      why));
}

}  // namespace

std::vector<Variable> lower_conv_to_cudnn(Node& node, const PassContext& ctx) {
  const auto* conv = dynamic_cast<const AbstractConv*>(node.op.get());
  if (conv == nullptr || !node.output_data[0].type.device.is_cuda()) return {};
  const std::string enabled = ctx.config.get("dnn.enabled");
  if (enabled == "False") {
    ctx.decline(node, kCandidate, "disabled by the flag dnn.enabled");
    return {};
  }
#if !CONVGRAPH_HAVE_CUDNN
  const std::string why =
      "cuDNN is not built into this convgraph (cudnn.h / libcudnn were not found at configure "
      "time, or CONVGRAPH_WITH_CUDNN=OFF)";
  if (enabled == "True") refuse_enabled(why);
  ctx.decline(node, kCandidate, why);
  return {};
#else
  const Device device = node.output_data[0].type.device;
  std::string why;
  if (enabled == "no_check") {
    // The user vouches for cuDNN, but a library of another major version than the header is
    // an installation error that would crash later: say so now.
    if (!cuda::cudnn_library_matches(&why)) {
      throw DeviceError(fmt::format("dnn.enabled=no_check: {}", why));
    }
  } else if (!cudnn_usable(device, &why)) {
    if (enabled == "True") refuse_enabled(why);
    ctx.decline(node, kCandidate, fmt::format("cuDNN cannot be used: {}", why));
    return {};
  }

  const ConvParams& p = conv->params();
  const DType dtype = node.output_data[0].type.dtype;
  if (!is_float(dtype)) {
    ctx.decline(node, kCandidate,
                fmt::format("dtype {}: cuDNN convolutions work on float16, float32 and float64",
                            dtype_name(dtype)));
    return {};
  }
  if (p.unshared) {
    ctx.decline(node, kCandidate, "unshared (locally connected) kernels: cuDNN has none");
    return {};
  }
  if (p.any_asymmetric()) {
    ctx.decline(node, kCandidate,
                fmt::format("asymmetric padding ({}): cuDNN pads both sides equally", p.str()));
    return {};
  }
  // Flag values the op refuses for this node (float16 precision in a backward direction, a
  // fixed algorithm 3-D convolutions do not have): the node goes to conv_gemm with the reason,
  // rather than failing the whole compilation.
  try {
    auto op = std::make_shared<GpuDnnConv>(conv->direction(), p,
                                           cudnn_options_from(ctx.config, conv->direction()));
    return {convgraph::apply(std::move(op), node.inputs)};
  } catch (const TypeError& e) {
    ctx.decline(node, kCandidate, e.what());
  } catch (const ValueError& e) {
    ctx.decline(node, kCandidate, e.what());
  }
  return {};
#endif
}

}  // namespace convgraph
