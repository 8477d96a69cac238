// Function: a compiled graph that can be called with tensors.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "convgraph/runtime/plan.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph {

class FunctionGraph;

class Function {
 public:
  Function() = default;
  Function(std::shared_ptr<const Plan> plan, std::shared_ptr<const FunctionGraph> graph);

  // Runs the plan. ARGS must match the compiled inputs in count, dtype, rank and static dims;
  // otherwise a ValueError/TypeError/ShapeError names the input and what was expected.
  std::vector<Tensor> operator()(const std::vector<Tensor>& args) const;
  std::vector<Tensor> call(const std::vector<Tensor>& args) const { return (*this)(args); }

  // Peak bytes held by buffers allocated during the last call (intermediates, outputs and
  // workspaces; inputs and constants are not counted).
  std::int64_t last_peak_bytes() const;
  // The optimized graph, for printing and inspection.
  const FunctionGraph& graph() const { return *graph_; }
  const Plan& plan() const { return *plan_; }
  // debugprint of the optimized graph.
  std::string str() const;

 private:
  std::shared_ptr<const Plan> plan_;
  std::shared_ptr<const FunctionGraph> graph_;
  std::shared_ptr<ExecutionStats> stats_;
};

}  // namespace convgraph
