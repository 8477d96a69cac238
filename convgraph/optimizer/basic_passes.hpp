// Constant folding (merging equal nodes is FunctionGraph::merge_equal_nodes).
#pragma once

#include "convgraph/base/config.hpp"
#include "convgraph/graph/function_graph.hpp"

namespace convgraph {

// Replaces nodes whose inputs are all constants (and whose op allows it) by constants holding
// their value. Outputs larger than MAX_ELEMENTS are left alone (folding would only trade compute
// for memory). Returns the number of variables folded.
int fold_constants(FunctionGraph& graph, std::int64_t max_elements = 1 << 20);

}  // namespace convgraph
