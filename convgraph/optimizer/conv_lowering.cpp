#include "convgraph/optimizer/conv_lowering.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "convgraph/graph/op.hpp"
#include "convgraph/graph/printing.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"

namespace convgraph {
namespace {

bool is_abstract_conv(const Node& node) {
  return dynamic_cast<const AbstractConv*>(node.op.get()) != nullptr;
}

std::string device_name(DeviceKind kind) {
  return kind == DeviceKind::cpu ? "the CPU" : "a CUDA GPU";
}

}  // namespace

std::string implementation_label(const ConvImplementation& implementation) {
  if (implementation.pass.empty()) return implementation.name;
  return fmt::format("{} ({})", implementation.name, implementation.pass);
}

std::vector<Variable> lower_with(const ConvImplementation& implementation, Node& node,
                                 const PassContext& ctx) {
  if (!is_abstract_conv(node)) return {};
  const ConvSignature signature = ConvSignature::of(node);
  if (!implementation.runs_on(signature.device)) return {};
  const std::string label = implementation_label(implementation);
  if (auto why = implementation.declines(signature, ctx.config)) {
    ctx.decline(node, label, *why);
    return {};
  }
  try {
    Variable out = implementation.build(signature, node.inputs, ctx.config);
    if (!out.defined()) {
      ctx.decline(node, label, "its build returned nothing");
      return {};
    }
    return {out};
  } catch (const TypeError& e) {
    ctx.decline(node, label, e.what());
  } catch (const ValueError& e) {
    ctx.decline(node, label, e.what());
  }
  return {};
}

GraphPass conv_lowering_pass(std::string pass_name) {
  LocalRewrite rewrite = [pass_name](Node& node, const PassContext& ctx) -> std::vector<Variable> {
    if (!is_abstract_conv(node)) return {};
    // With conv.impl set, conv_impl has made every choice: a node it left has no listed
    // implementation, and taking it here would defeat the selection.
    if (!ctx.config.get_list("conv.impl").empty()) return {};
    for (const ConvImplementation& row : conv_registry().all()) {
      if (row.pass != pass_name) continue;
      if (excluded_by_flags(row, ctx.config)) continue;
      // A row that takes the node where it is faster than the passes after it (its prefers
      // hook) leaves the others to them.
      if (row.hooks.prefers && row.runs_on(node.output_data[0].type.device)) {
        const ConvSignature signature = ConvSignature::of(node);
        if (!row.declines(signature, ctx.config)) {
          if (auto why = row.hooks.prefers(signature, ctx.config)) {
            ctx.decline(node, implementation_label(row), "not preferred here: " + *why);
            continue;
          }
        }
      }
      std::vector<Variable> out = lower_with(row, node, ctx);
      if (!out.empty()) return out;
    }
    return {};
  };
  // Two rounds: a lowered node never needs lowering again.
  return equilibrium({{pass_name, std::move(rewrite)}}, 2);
}

PassEntry conv_lowering_entry(const std::string& pass_name, double position,
                              std::string description) {
  PassEntry entry;
  entry.name = pass_name;
  entry.position = position;
  entry.tags = {"fast_run", "fast_compile"};
  for (const ConvImplementation& row : conv_registry().all()) {
    if (row.pass != pass_name) continue;
    for (const std::string& tag : row.tags) {
      if (std::find(entry.tags.begin(), entry.tags.end(), tag) == entry.tags.end()) {
        entry.tags.push_back(tag);
      }
    }
  }
  entry.description = std::move(description);
  entry.run = conv_lowering_pass(pass_name);
  return entry;
}

void select_conv_implementations(FunctionGraph& graph, const PassContext& ctx) {
  const std::vector<const ConvImplementation*> listed = conv_impl_selection(ctx.config);
  if (listed.empty()) return;
  const std::vector<Node*> order = graph.toposort();  // a copy: replace() changes the order
  for (Node* node : order) {
    if (!graph.contains(node) || !is_abstract_conv(*node)) continue;
    const std::shared_ptr<Node> keep = node->shared_from_this();
    for (const ConvImplementation* row : listed) {
      if (auto why = excluded_by_flags(*row, ctx.config)) {
        if (row->runs_on(node->output_data[0].type.device)) {
          ctx.decline(*node, implementation_label(*row), *why);
        }
        continue;
      }
      const std::vector<Variable> out = lower_with(*row, *node, ctx);
      if (out.empty()) continue;
      graph.replace(keep->output(0), out[0], "conv_impl");
      break;
    }
  }
}

void check_no_abstract_conv(FunctionGraph& graph, const PassContext& ctx) {
  for (Node* node : graph.toposort()) {
    if (!is_abstract_conv(*node)) continue;
    const ConvSignature signature = ConvSignature::of(*node);
    const std::vector<std::string> excluding = ctx.config.get_list("optimizer_excluding");
    std::set<std::string> known_tags{"conv_meta", "conv_impl"};
    for (const ConvImplementation& row : conv_registry().all()) {
      known_tags.insert(row.tags.begin(), row.tags.end());
      if (!row.pass.empty()) known_tags.insert(row.pass);
    }
    std::vector<std::string> excluded;
    for (const std::string& tag : excluding) {
      if (known_tags.count(tag) != 0) excluded.push_back(tag);
    }
    // Recorded declines, once each, in the order they were recorded.
    std::vector<std::string> recorded;
    if (ctx.declines != nullptr) {
      auto it = ctx.declines->find(node);
      if (it != ctx.declines->end()) {
        for (const std::string& line : it->second) {
          if (std::find(recorded.begin(), recorded.end(), line) == recorded.end()) {
            recorded.push_back(line);
          }
        }
      }
    }
    std::string reasons;
    for (const ConvImplementation& row : conv_registry().all()) {
      if (!row.runs_on(signature.device)) continue;
      const std::string label = implementation_label(row);
      std::string why;
      for (const std::string& line : recorded) {
        if (line.rfind(label + ": ", 0) == 0) {
          why = line.substr(label.size() + 2);
          break;
        }
      }
      if (why.empty()) {
        if (auto flags = excluded_by_flags(row, ctx.config)) {
          why = *flags;
        } else if (auto declined = row.declines(signature, ctx.config)) {
          why = *declined;
        } else if (row.pass.empty()) {
          why = fmt::format(
              "it takes this node, but is used only when selected by name "
              "(conv.impl={})",
              row.name);
        } else {
          why = fmt::format("it takes this node, but its pass {} was not selected by the flags",
                            row.pass);
        }
      }
      reasons += fmt::format("\n  - {}: {}", label, why);
    }
    if (reasons.empty()) {
      reasons = fmt::format("\n  - no implementation is registered for {}",
                            device_name(signature.device.kind));
    }
    const std::vector<std::string> listed = ctx.config.get_list("conv.impl");
    throw UnsupportedError(fmt::format(
        "{} (node #{}): no implementation is available for this convolution ({} {}, {} on {}).\n"
        "Lowering tags excluded by optimizer_excluding: {}.\n"
        "Selected by conv.impl: {}.\n"
        "Candidates:{}\n"
        "(conv_dnn lowers to oneDNN on the CPU and cuDNN on the GPU, conv_gemm to CorrMM / "
        "GpuCorrMM; conv.impl=NAME picks one by name, and conv.impl=reference runs the slow "
        "reference on purpose.)\nThe node:\n{}",
        node->op->str(), node->id, signature.direction_name(),
        fmt::format("{}-D", signature.params.convdim), dtype_name(signature.dtype),
        signature.device.str(),
        excluded.empty() ? "none" : fmt::format("{}", fmt::join(excluded, ", ")),
        listed.empty() ? "every implementation (the flag is empty)"
                       : fmt::format("{}", fmt::join(listed, ", ")),
        reasons, debugprint(node->shared_from_this()->outputs())));
  }
}

}  // namespace convgraph
