// The graph-independent clean-up passes: merging equal nodes and constant folding.
#pragma once

#include "convgraph/base/config.hpp"
#include "convgraph/graph/function_graph.hpp"

namespace convgraph {

// Replaces nodes whose inputs are all constants (and whose op allows it) by constants holding
// their value. Outputs larger than MAX_ELEMENTS are left alone (folding would only trade compute
// for memory). Returns the number of variables folded.
int fold_constants(FunctionGraph& graph, std::int64_t max_elements = 1 << 20);

// Merge, then (in FAST_RUN and DebugMode) constant folding and a second merge.
void run_basic_passes(FunctionGraph& graph, const Config& config);

}  // namespace convgraph
