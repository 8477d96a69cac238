#include "convgraph/optimizer/layout_pass.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "convgraph/base/error.hpp"
#include "convgraph/build_config.hpp"
#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/fused_elemwise.hpp"
#include "convgraph/ops/tensor/layout_reorder.hpp"
#if CONVGRAPH_HAVE_ONEDNN
#include "convgraph/ops/cpu/onednn_conv.hpp"
#endif

namespace convgraph {

#if CONVGRAPH_HAVE_ONEDNN
namespace {

// One element whatever the order: a scalar, or a tensor whose static dims are all 1.
bool single_element(const TensorType& type) {
  for (const StaticDim& d : type.dims) {
    if (d != StaticDim{1}) return false;
  }
  return true;
}

// An elementwise node whose outputs all have the iteration shape (no reduction).
bool is_elementwise(const Node& node) {
  if (dynamic_cast<const Elemwise*>(node.op.get()) != nullptr) return true;
  const auto* fused = dynamic_cast<const FusedElemwise*>(node.op.get());
  return fused != nullptr && !fused->ir().has_reduction();
}

// What the analysis knows of one OneDnnConv node: the layout its primitive reads at each input
// that may be blocked, and the one it writes.
struct ConvInfo {
  std::map<int, Layout> reads;  // input index -> layout the primitive reads there
  std::optional<Layout> writes;
};

std::optional<ConvInfo> conv_info(const Node& node, const OneDnnConv& conv) {
  if (conv.layouts().any_blocked() || node.inputs.size() < 2) return std::nullopt;
  const std::optional<Shape> a = known_shape(node.inputs[0].type().dims);
  const std::optional<Shape> b = known_shape(node.inputs[1].type().dims);
  if (!a || !b || !node.inputs[0].type().device.is_cpu()) return std::nullopt;
  Shape spatial;
  if (conv.direction() != ConvDirection::forward) {
    if (node.inputs.size() != 3 || !node.inputs[2].is_constant()) return std::nullopt;
    spatial = node.inputs[2].constant_value().to_vector<std::int64_t>();
  }
  OneDnnActivationLayouts layouts;
  try {
    layouts = onednn_conv_activation_layouts(conv.direction(), conv.params(), conv.epilogue(), *a,
                                             *b, spatial, conv.algorithm());
  } catch (const ConvGraphError&) {
    return std::nullopt;  // the node reports it when it runs
  }
  ConvInfo info;
  auto blocked = [](const std::optional<Layout>& l) { return l && *l != Layout::logical; };
  if (blocked(layouts.a)) info.reads[0] = *layouts.a;
  if (blocked(layouts.b)) info.reads[1] = *layouts.b;
  if (blocked(layouts.out)) {
    info.writes = *layouts.out;
    // The sum post-op adds the residual where the primitive writes its output.
    if (conv.epilogue().residual) info.reads[2 + (conv.epilogue().bias ? 1 : 0)] = *layouts.out;
  }
  return info;
}

class LayoutChooser {
 public:
  explicit LayoutChooser(FunctionGraph& graph) : graph_(graph) {}

  int run() {
    for (Node* node : graph_.toposort()) {
      position_[node] = static_cast<int>(keep_.size());
      keep_.push_back(node->shared_from_this());
    }
    analyse();
    if (chosen_.empty()) return 0;
    const int count = static_cast<int>(chosen_.size());
    rewrite();
    return count;
  }

 private:
  // ---- the analysis, on the graph as it is ----

  void analyse() {
    // Which values could be blocked, in order.
    for (const auto& keep : keep_) {
      Node* node = keep.get();
      if (const auto* conv = dynamic_cast<const OneDnnConv*>(node->op.get())) {
        std::optional<ConvInfo> info = conv_info(*node, *conv);
        if (!info) continue;
        const TensorType& out = node->output_data[0].type;
        if (info->writes && conv->direction() != ConvDirection::grad_weights &&
            out.layout == Layout::logical) {
          chosen_[&node->output_data[0]] = *info->writes;
        }
        convs_[node] = std::move(*info);
      } else if (is_elementwise(*node)) {
        if (const std::optional<Layout> l = elementwise_layout(*node)) {
          for (VariableData& out : node->output_data) chosen_[&out] = *l;
          elementwise_.insert(node);
        }
      }
    }
    // Drop what no reader takes as it is, until nothing changes.
    for (bool changed = true; changed;) {
      changed = false;
      // An elementwise node is kept or dropped with all its outputs.
      for (auto it = elementwise_.begin(); it != elementwise_.end();) {
        Node* node = *it;
        bool read_blocked = false;
        if (const std::optional<Layout> l = elementwise_layout(*node)) {
          for (const VariableData& out : node->output_data) {
            read_blocked = read_blocked || blocked_readers(&out, *l) > 0;
          }
        }
        if (read_blocked && elementwise_pays(*node)) {
          ++it;
          continue;
        }
        for (VariableData& out : node->output_data) chosen_.erase(&out);
        it = elementwise_.erase(it);
        changed = true;
      }
      for (auto it = chosen_.begin(); it != chosen_.end();) {
        if (elementwise_.count(it->first->owner) != 0 ||
            blocked_readers(it->first, it->second) > 0) {
          ++it;
          continue;
        }
        it = chosen_.erase(it);
        changed = true;
      }
    }
  }

  // The layout an elementwise node could run in: every input blocked (in one layout, of the
  // output's static shape) or a single element, at least one blocked.
  std::optional<Layout> elementwise_layout(const Node& node) const {
    std::optional<Shape> shape;
    for (const VariableData& out : node.output_data) {
      const std::optional<Shape> s = known_shape(out.type.dims);
      if (!s || (shape && *s != *shape) || !out.type.device.is_cpu()) return std::nullopt;
      shape = s;
    }
    if (!shape) return std::nullopt;
    std::optional<Layout> layout;
    for (const Variable& in : node.inputs) {
      const auto it = chosen_.find(in.get());
      if (it == chosen_.end()) {
        if (single_element(in.type())) continue;
        return std::nullopt;
      }
      if ((layout && *layout != it->second) || known_shape(in.type().dims) != shape) {
        return std::nullopt;
      }
      layout = it->second;
    }
    return layout;
  }

  // Whether CLIENT of V takes it in LAYOUT as it is.
  bool reads_blocked(const FunctionGraph::Client& c, Layout layout) const {
    if (c.node == nullptr) return false;
    if (const auto it = convs_.find(c.node); it != convs_.end()) {
      const auto read = it->second.reads.find(c.index);
      return read != it->second.reads.end() && read->second == layout;
    }
    return elementwise_.count(c.node) != 0;
  }

  // Where V's first reader of the logical order runs (its place in the order of the nodes as the
  // pass found them; past the end when none does).
  int first_logical_reader(const Variable& var, Layout layout) const {
    int first = std::numeric_limits<int>::max();
    for (const FunctionGraph::Client& c : graph_.clients(var)) {
      if (c.node != nullptr && !reads_blocked(c, layout)) {
        first = std::min(first, position_.at(c.node));
      }
    }
    return first;
  }

  // The readers that take V in LAYOUT as it is; convolutions only where they run before V's first
  // reader of the logical order. Once a logical reader needs V, its logical twin exists; a
  // convolution after that reads the twin (and reorders it itself) rather than keep the blocked
  // value alive beside it: a ReLU's output read blocked by the next layer's weight gradient and
  // in the logical order by the ReLU's gradient was otherwise held twice from the forward to the
  // backward pass (26 MiB of resnet50_conv's values saved at the loss, the stem's output among
  // them).
  int blocked_readers(const VariableData* v, Layout layout) const {
    const Variable var = as_variable(v);
    const int first_logical = first_logical_reader(var, layout);
    int count = 0;
    for (const FunctionGraph::Client& c : graph_.clients(var)) {
      if (!reads_blocked(c, layout)) continue;
      if (convs_.count(c.node) != 0 && position_.at(c.node) > first_logical) continue;
      ++count;
    }
    return count;
  }

  // Whether V has a reader that needs the logical order.
  bool logical_reader(const VariableData* v) const {
    const Variable var = as_variable(v);
    const auto chosen = chosen_.find(v);
    for (const FunctionGraph::Client& c : graph_.clients(var)) {
      if (c.node == nullptr) return true;
      if (const auto it = convs_.find(c.node); it != convs_.end()) {
        const auto read = it->second.reads.find(c.index);
        if (chosen == chosen_.end() || read == it->second.reads.end() ||
            read->second != chosen->second) {
          return true;
        }
      } else if (elementwise_.count(c.node) == 0) {
        return true;
      }
    }
    return false;
  }

  // An elementwise node kept blocked reorders each output that a logical reader reads; logical,
  // it would need each blocked input reordered, unless another logical reader needs that anyway.
  bool elementwise_pays(const Node& node) const {
    int added = 0;
    for (const VariableData& out : node.output_data) added += logical_reader(&out) ? 1 : 0;
    int saved = 0;
    std::unordered_set<const VariableData*> seen;
    for (const Variable& in : node.inputs) {
      if (chosen_.count(in.get()) == 0 || !seen.insert(in.get()).second) continue;
      // Another logical reader besides this node keeps the input's reorder anyway.
      bool others = false;
      for (const FunctionGraph::Client& c : graph_.clients(in)) {
        if (c.node == &node) continue;
        if (c.node == nullptr) {
          others = true;
        } else if (const auto it = convs_.find(c.node); it != convs_.end()) {
          const auto read = it->second.reads.find(c.index);
          others = others || read == it->second.reads.end() || read->second != chosen_.at(in.get());
        } else if (elementwise_.count(c.node) == 0) {
          others = true;
        }
      }
      saved += others ? 0 : 1;
    }
    return saved >= added;
  }

  Variable as_variable(const VariableData* v) const {
    // The graph's clients are keyed by the variable's data; an output of a node is reached
    // through its owner.
    Node* owner = v->owner;
    return owner->output(v->index);
  }

  // ---- the rewrite, in order ----

  void rewrite() {
    for (const auto& keep : keep_) {
      Node* node = keep.get();
      if (!graph_.contains(node)) continue;
      if (const auto it = convs_.find(node); it != convs_.end()) {
        rewrite_conv(*node, it->second);
      } else if (elementwise_.count(node) != 0) {
        rewrite_elementwise(*node);
      }
    }
  }

  // The blocked twin of what input I of NODE reads now, when it has one.
  const Variable* blocked_twin(const Node& node, std::size_t i) const {
    const auto it = twins_.find(node.inputs[i].get());
    return it == twins_.end() ? nullptr : &it->second;
  }

  void rewrite_conv(Node& node, const ConvInfo& info) {
    const auto& conv = static_cast<const OneDnnConv&>(*node.op);
    OneDnnLayouts layouts;
    std::vector<Variable> inputs = node.inputs;
    bool changed = false;
    for (const auto& [index, layout] : info.reads) {
      const Variable* twin = blocked_twin(node, static_cast<std::size_t>(index));
      if (twin == nullptr || twin->type().layout != layout) continue;
      // After the value's first logical reader: the twin's logical order (blocked_readers).
      if (position_.at(&node) >
          twin_until_.at(node.inputs[static_cast<std::size_t>(index)].get())) {
        continue;
      }
      inputs[static_cast<std::size_t>(index)] = *twin;
      const bool residual = conv.direction() == ConvDirection::forward && index >= 2;
      (residual ? layouts.residual : index == 0 ? layouts.a : layouts.b) = layout;
      changed = true;
    }
    const bool blocked_out = chosen_.count(&node.output_data[0]) != 0;
    if (blocked_out) layouts.out = chosen_.at(&node.output_data[0]);
    if (!changed && !blocked_out) return;
    const Variable old_out = node.output(0);
    const Variable out = convgraph::apply(conv.with_layouts(layouts), inputs);
    finish(old_out, out, blocked_out);
  }

  void rewrite_elementwise(Node& node) {
    std::vector<Variable> inputs = node.inputs;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      if (const Variable* twin = blocked_twin(node, i)) {
        inputs[i] = *twin;
      } else if (!single_element(inputs[i].type())) {
        throw ConvGraphError(fmt::format(
            "layout pass: input {} of {} has no blocked twin (the analysis and the rewrite "
            "disagree)",
            i, node.op->str()));
      }
    }
    const Layout layout = chosen_.at(&node.output_data[0]);
    const std::vector<Variable> old_outs = node.outputs();
    const std::shared_ptr<Node> made = make_node(node.op, inputs);
    if (made->output_data[0].type.layout != layout) {
      throw ConvGraphError(
          fmt::format("layout pass: {} made an output in layout {}, not {}", node.op->str(),
                      layout_name(made->output_data[0].type.layout, 4), layout_name(layout, 4)));
    }
    const std::vector<Variable> outs = made->outputs();
    for (std::size_t k = 0; k < outs.size(); ++k) finish(old_outs[k], outs[k], true);
  }

  // OUT replaces OLD; when it is blocked, through a reorder to the logical order that the
  // readers still reading OLD read (the blocked readers come later and take OUT itself).
  void finish(const Variable& old, const Variable& out, bool blocked) {
    if (!blocked) {
      graph_.replace(old, out, "layout: the convolution reads blocked inputs");
      return;
    }
    const Variable logical = reorder_to(out, Layout::logical);
    twins_[logical.get()] = out;
    twin_until_[logical.get()] = first_logical_reader(old, out.type().layout);
    graph_.replace(old, logical,
                   fmt::format("layout: kept in {}", layout_name(out.type().layout, out.ndim())));
  }

  FunctionGraph& graph_;
  std::vector<std::shared_ptr<Node>> keep_;        // the original nodes, alive through the rewrite
  std::unordered_map<const Node*, int> position_;  // each original node's place in keep_
  std::unordered_map<const Node*, ConvInfo> convs_;
  std::unordered_set<Node*> elementwise_;
  // The values to keep blocked (outputs of the original nodes) and their layouts.
  std::unordered_map<const VariableData*, Layout> chosen_;
  // For each reorder to the logical order the rewrite made: the blocked value it reorders.
  std::unordered_map<const VariableData*, Variable> twins_;
  // For each of those reorders: where the value's first logical reader runs (convolutions after
  // it read the logical twin).
  std::unordered_map<const VariableData*, int> twin_until_;
};

}  // namespace
#endif

int choose_layouts(FunctionGraph& graph, const Config& config) {
  (void)config;
#if CONVGRAPH_HAVE_ONEDNN
  return LayoutChooser(graph).run();
#else
  (void)graph;
  return 0;
#endif
}

}  // namespace convgraph
