#include "convgraph/optimizer/conv_lowering.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "convgraph/graph/op.hpp"
#include "convgraph/graph/printing.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/cpu/corrmm.hpp"

namespace convgraph {

std::vector<Variable> lower_conv_to_corrmm(Node& node, const PassContext& ctx) {
  const auto* conv = dynamic_cast<const AbstractConv*>(node.op.get());
  if (conv == nullptr) return {};
  const TensorType& type = node.output_data[0].type;
  if (!type.device.is_cpu()) return {};  // conv_gemm_gpu's (GpuCorrMM)
  if (type.dtype != DType::float32 && type.dtype != DType::float64) {
    ctx.decline(node, "conv_gemm (CorrMM)",
                fmt::format("dtype {}: CorrMM supports float32 and float64 (on the CPU, float16 "
                            "convolutions are not supported; cast to float32)",
                            dtype_name(type.dtype)));
    return {};
  }
  return {
      convgraph::apply(std::make_shared<CorrMM>(conv->direction(), conv->params()), node.inputs)};
}

void check_no_abstract_conv(FunctionGraph& graph, const PassContext& ctx) {
  static const char* const kLoweringTags[] = {"conv_meta", "conv_dnn", "onednn", "cudnn",
                                              "conv_gemm"};
  for (Node* node : graph.toposort()) {
    if (dynamic_cast<const AbstractConv*>(node->op.get()) == nullptr) continue;
    const auto excluding = ctx.config.get_list("optimizer_excluding");
    std::vector<std::string> excluded;
    for (const char* tag : kLoweringTags) {
      if (std::find(excluding.begin(), excluding.end(), tag) != excluding.end()) {
        excluded.emplace_back(tag);
      }
    }
    std::string reasons;
    if (ctx.declines != nullptr) {
      auto it = ctx.declines->find(node);
      if (it != ctx.declines->end()) {
        for (const auto& line : it->second) reasons += "\n  - " + line;
      }
    }
    if (reasons.empty()) reasons = "\n  - no lowering pass was offered the node";
    throw UnsupportedError(fmt::format(
        "{} (node #{}): no implementation is available for this convolution.\n"
        "Lowering tags excluded by optimizer_excluding: {}.\n"
        "Candidates:{}\n"
        "(conv_dnn lowers to oneDNN on the CPU and cuDNN on the GPU, conv_gemm to CorrMM; "
        "excluding both leaves nothing. To run the slow reference implementation on purpose, "
        "also exclude conv_check.)\nThe node:\n{}",
        node->op->str(), node->id,
        excluded.empty() ? "none" : fmt::format("{}", fmt::join(excluded, ", ")), reasons,
        debugprint(node->shared_from_this()->outputs())));
  }
}

}  // namespace convgraph
