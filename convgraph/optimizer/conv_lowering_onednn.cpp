#include "convgraph/optimizer/conv_lowering_onednn.hpp"

#include <fmt/format.h>

#include <memory>

#include "convgraph/build_config.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#if CONVGRAPH_HAVE_ONEDNN
#include "convgraph/ops/cpu/onednn_conv.hpp"
#endif

namespace convgraph {
namespace {

constexpr const char* kCandidate = "conv_dnn (oneDNN)";

}  // namespace

std::vector<Variable> lower_conv_to_onednn(Node& node, const PassContext& ctx) {
  const auto* conv = dynamic_cast<const AbstractConv*>(node.op.get());
  if (conv == nullptr) return {};
  // Nodes on a GPU are conv_dnn_gpu's (cuDNN).
  if (!node.output_data[0].type.device.is_cpu()) return {};
#if !CONVGRAPH_HAVE_ONEDNN
  ctx.decline(node, kCandidate,
              "oneDNN is not built into this convgraph (libdnnl-dev was not found at configure "
              "time)");
  return {};
#else
  const TensorType& type = node.output_data[0].type;
  // dnn.enabled is the switch for the vendor DNN library; on the CPU that is oneDNN. Only
  // "False" matters here: oneDNN needs no availability probe, and a build without it is
  // handled above.
  if (ctx.config.get("dnn.enabled") == "False") {
    ctx.decline(node, kCandidate, "dnn.enabled=False");
    return {};
  }
  if (type.dtype != DType::float32) {
    ctx.decline(node, kCandidate,
                fmt::format("dtype {}: oneDNN convolutions are lowered for float32 only",
                            dtype_name(type.dtype)));
    return {};
  }
  if (conv->params().unshared) {
    ctx.decline(node, kCandidate, "unshared (locally connected) kernels: oneDNN has none");
    return {};
  }
  return {convgraph::apply(std::make_shared<OneDnnConv>(conv->direction(), conv->params()),
                           node.inputs)};
#endif
}

}  // namespace convgraph
