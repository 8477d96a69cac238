#include "convgraph/optimizer/inplace_pass.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_set>
#include <vector>

#include "convgraph/graph/inplace.hpp"
#include "convgraph/graph/op.hpp"

namespace convgraph {
namespace {

// Ancestors visited before giving up on proving that a reader precedes the destroyer: the proof
// walks the graph above the node, and a huge graph must not make the pass quadratic.
constexpr std::size_t kAncestorBudget = 4096;

// Whether each node of OTHERS is an ancestor of NODE (computes one of its inputs, directly or
// not). False when the walk exceeds the budget.
bool all_ancestors(const Node& node, std::unordered_set<const Node*> others) {
  if (others.empty()) return true;
  std::unordered_set<const Node*> seen;
  std::vector<const Node*> stack;
  for (const Variable& in : node.inputs) {
    if (in.owner() != nullptr) stack.push_back(in.owner());
  }
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    if (!seen.insert(n).second) continue;
    if (others.erase(n) != 0 && others.empty()) return true;
    if (seen.size() > kAncestorBudget) return false;
    for (const Variable& in : n->inputs) {
      if (in.owner() != nullptr) stack.push_back(in.owner());
    }
  }
  return false;
}

// The nodes other than NODE that write into a value NODE reads, or into what such a value views
// or is viewed by: they must run after NODE.
std::vector<const Node*> overwriters_of_inputs(const FunctionGraph& graph, const Node& node) {
  std::vector<const Node*> found;
  for (const Variable& in : node.inputs) {
    // The value whose buffer IN sees.
    Variable root = in;
    for (bool moved = true; moved && root.owner() != nullptr;) {
      moved = false;
      for (const auto& [o, i] : root.owner()->op->view_map()) {
        if (o == root.index()) {
          root = root.owner()->inputs[static_cast<std::size_t>(i)];
          moved = true;
          break;
        }
      }
    }
    // ROOT and its views, transitively; a reader writing into one of them overwrites IN.
    std::unordered_set<const VariableData*> seen{root.get()};
    std::vector<Variable> values{root};
    for (std::size_t v = 0; v < values.size(); ++v) {
      for (const auto& client : graph.clients(values[v])) {
        if (client.node == nullptr) continue;
        for (const auto& [o, i] : client.node->op->view_map()) {
          if (i != client.index) continue;
          const Variable view = client.node->output(o);
          if (seen.insert(view.get()).second) values.push_back(view);
        }
        for (const auto& [o, i] : destroy_map_of(*client.node->op)) {
          if (i == client.index && client.node != &node &&
              std::find(found.begin(), found.end(), client.node) == found.end()) {
            found.push_back(client.node);
          }
        }
      }
    }
  }
  return found;
}

// Why NODE's output OUTPUT cannot be computed into the buffer of shared variable V, a function
// input, when updates_inplace=early; empty when it can. V must be updated by exactly that
// output, which nothing but the update reads; every other reader of V, through views too, then
// runs before NODE (the plan orders them so, planner/schedule.hpp), so none of them may write
// into V, and no view of V may be a graph output.
std::string shared_refusal(const FunctionGraph& graph, const Node& node, int output,
                           const Variable& v) {
  if (!v.is_shared()) return "a function input (an argument)";
  const Variable out = const_cast<Node&>(node).output(output);
  const auto& out_clients = graph.clients(out);
  if (out_clients.size() != 1 || out_clients[0].node != nullptr) {
    return "a shared variable whose update is not this output alone";
  }
  const int out_index = out_clients[0].index;
  bool updates_v = false;
  for (const auto& [o, i] : graph.updates()) {
    updates_v = updates_v || (o == out_index && graph.inputs()[static_cast<std::size_t>(i)] == v);
  }
  if (!updates_v) return "a shared variable this output does not update";
  if (std::count(node.inputs.begin(), node.inputs.end(), v) != 1) return "read twice by the node";
  bool escapes = false, destroyed = false;
  const std::vector<Node*> readers = readers_through_views(graph, v, &node, &escapes, &destroyed);
  if (escapes) return "a shared variable that is, or is viewed by, a function output";
  if (destroyed) return "a shared variable destroyed by another node";
  // NODE has no readers, so only write-after-read constraints can follow it: NODE reads a
  // value that another in-place update overwrites, which then runs after NODE, and so on. If one
  // of those must also run before NODE (it reads V), no order satisfies both ({a <- f(a, b),
  // b <- g(b, a)} cannot both be in place).
  const std::unordered_set<const Node*> before(readers.begin(), readers.end());
  std::unordered_set<const Node*> seen{&node};
  std::vector<const Node*> stack{&node};
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    for (const Node* later : overwriters_of_inputs(graph, *n)) {
      if (before.count(later) != 0) {
        return "a shared variable read by another in-place update that must run after this one";
      }
      if (seen.insert(later).second) stack.push_back(later);
    }
  }
  return {};
}

// Why input INPUT of NODE cannot be destroyed by its output OUTPUT; empty when it can.
std::string refusal(const FunctionGraph& graph, const Node& node, int output, int input,
                    bool early_updates) {
  const Variable& v = node.inputs[static_cast<std::size_t>(input)];
  if (v.is_constant()) return "a constant";
  const Node* producer = v.owner();
  if (producer == nullptr) {
    if (early_updates) return shared_refusal(graph, node, output, v);
    return "a function input (an argument or a shared variable)";
  }
  for (const auto& [out, in] : producer->op->view_map()) {
    if (out == v.index()) return "a view of another value";
  }
  if (std::count(node.inputs.begin(), node.inputs.end(), v) != 1) return "read twice by the node";
  std::unordered_set<const Node*> others;
  for (const auto& client : graph.clients(v)) {
    if (client.node == nullptr) return "a function output";
    if (client.node == &node) continue;
    for (const auto& [out, in] : client.node->op->view_map()) {
      if (in == client.index) return "viewed by another node";
    }
    for (const auto& [out, in] : destroy_map_of(*client.node->op)) {
      if (in == client.index) return "destroyed by another node";
    }
    others.insert(client.node);
  }
  if (!all_ancestors(node, others)) return "read by a node that may run later";
  return {};
}

}  // namespace

std::vector<Node*> readers_through_views(const FunctionGraph& graph, const Variable& v,
                                         const Node* except, bool* escapes, bool* destroyed) {
  std::vector<Node*> readers;
  std::unordered_set<const Node*> seen;
  std::vector<Variable> pending{v};
  while (!pending.empty()) {
    const Variable value = pending.back();
    pending.pop_back();
    for (const auto& client : graph.clients(value)) {
      if (client.node == nullptr) {
        if (escapes != nullptr) *escapes = true;
        continue;
      }
      if (client.node == except) continue;
      for (const auto& [o, in] : destroy_map_of(*client.node->op)) {
        if (in == client.index && destroyed != nullptr) *destroyed = true;
      }
      for (const auto& [o, in] : client.node->op->view_map()) {
        if (in == client.index) pending.push_back(client.node->output(o));
      }
      if (seen.insert(client.node).second) readers.push_back(client.node);
    }
  }
  return readers;
}

int make_inplace(FunctionGraph& graph, const PassContext& ctx) {
  int made = 0;
  const bool early_updates = ctx.config.get("updates_inplace") == "early";
  // A copy: replacing a node changes the order. The nodes after it stay in the graph.
  const std::vector<Node*> order = graph.toposort();
  for (Node* node : order) {
    const auto* capable = dynamic_cast<const InplaceCapable*>(node->op.get());
    if (capable == nullptr || !capable->destroy_map().empty()) continue;
    std::vector<std::string> reasons;
    std::vector<std::pair<int, int>> candidates = capable->inplace_candidates(*node);
    if (early_updates) {
      // A shared variable's own buffer first: taking it saves a buffer for the whole call,
      // taking a dead input saves one for the rest of it.
      std::stable_partition(candidates.begin(), candidates.end(), [&](const auto& pair) {
        return node->inputs[static_cast<std::size_t>(pair.second)].is_shared();
      });
    }
    for (const auto& [out, in] : candidates) {
      const std::string why = refusal(graph, *node, out, in, early_updates);
      if (!why.empty()) {
        reasons.push_back(fmt::format("input {} is {}", in, why));
        continue;
      }
      const std::vector<Variable> old_outputs = node->outputs();
      const std::vector<Variable> new_outputs =
          apply(capable->with_inplace(out, in), node->inputs).owner()->outputs();
      std::vector<std::pair<Variable, Variable>> pairs;
      for (std::size_t k = 0; k < old_outputs.size(); ++k) {
        // Same value, same name in debugprint and in errors.
        Variable renamed = new_outputs[k];
        if (!old_outputs[k].name().empty()) renamed.named(old_outputs[k].name());
        pairs.emplace_back(old_outputs[k], renamed);
      }
      graph.replace_all(pairs,
                        fmt::format("inplace: {} writes into input {}", node->op->str(), in));
      ++made;
      reasons.clear();
      break;
    }
    for (const std::string& why : reasons) ctx.decline(*node, "inplace", why);
  }
  return made;
}

}  // namespace convgraph
