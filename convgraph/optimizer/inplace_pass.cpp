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

// Why input INPUT of NODE cannot be destroyed; empty when it can.
std::string refusal(const FunctionGraph& graph, const Node& node, int input) {
  const Variable& v = node.inputs[static_cast<std::size_t>(input)];
  if (v.is_constant()) return "a constant";
  const Node* producer = v.owner();
  if (producer == nullptr) return "a function input (an argument or a shared variable)";
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

int make_inplace(FunctionGraph& graph, const PassContext& ctx) {
  int made = 0;
  // A copy: replacing a node changes the order. The nodes after it stay in the graph.
  const std::vector<Node*> order = graph.toposort();
  for (Node* node : order) {
    const auto* capable = dynamic_cast<const InplaceCapable*>(node->op.get());
    if (capable == nullptr || !capable->destroy_map().empty()) continue;
    std::vector<std::string> reasons;
    for (const auto& [out, in] : capable->inplace_candidates(*node)) {
      const std::string why = refusal(graph, *node, in);
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
