#include "convgraph/optimizer/function.hpp"

#include "convgraph/graph/function_graph.hpp"
#include "convgraph/graph/printing.hpp"

namespace convgraph {

Function::Function(std::shared_ptr<const Plan> plan, std::shared_ptr<const FunctionGraph> graph)
    : plan_(std::move(plan)),
      graph_(std::move(graph)),
      stats_(std::make_shared<ExecutionStats>()) {}

std::vector<Tensor> Function::operator()(const std::vector<Tensor>& args) const {
  if (!plan_) throw ValueError("call of an empty Function (default-constructed, never compiled)");
  return execute(*plan_, args, stats_.get());
}

std::int64_t Function::last_peak_bytes() const {
  return stats_ ? stats_->peak_bytes : 0;
}

std::string Function::str() const {
  return graph_ ? debugprint(*graph_) : std::string();
}

}  // namespace convgraph
