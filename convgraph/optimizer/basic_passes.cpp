#include "convgraph/optimizer/basic_passes.hpp"

#include "convgraph/graph/op.hpp"

namespace convgraph {

int fold_constants(FunctionGraph& graph, std::int64_t max_elements) {
  int folded = 0;
  const std::vector<Node*> order = graph.toposort();
  for (Node* node : order) {
    if (!graph.contains(node) || !node->op->foldable()) continue;
    bool all_constant = true;
    for (const Variable& in : node->inputs) all_constant = all_constant && in.is_constant();
    if (!all_constant) continue;
    std::vector<Tensor> args;
    for (const Variable& in : node->inputs) args.push_back(in.constant_value());
    std::vector<Tensor> results(static_cast<std::size_t>(node->num_outputs()));
    try {
      node->op->perform(args, results);
    } catch (const ConvGraphError&) {
      continue;  // leave the error to run time, where it names the call that triggered it
    }
    bool small = true;
    for (const Tensor& r : results) small = small && r.defined() && r.numel() <= max_elements;
    if (!small) continue;
    std::shared_ptr<Node> keep = node->shared_from_this();
    for (int k = 0; k < keep->num_outputs(); ++k) {
      Variable out = keep->output(k);
      // A fresh contiguous copy: the constant must not alias an input constant's buffer.
      Variable c = make_constant(results[static_cast<std::size_t>(k)].clone(), out.name());
      if (!out.type().accepts(c.type())) continue;
      graph.replace(out, c, "constant folding");
      ++folded;
    }
  }
  return folded;
}

}  // namespace convgraph
