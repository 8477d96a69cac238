// The order a compiled function runs its nodes in. Any topological order computes the same
// values, but how long each buffer stays alive depends on it: a depth-first order from the
// outputs, as FunctionGraph::toposort() gives, runs the whole chain of activation gradients of a
// network before any weight gradient or update reads them, so that every activation and every
// activation gradient is alive at once.
#pragma once

#include <vector>

#include "convgraph/graph/function_graph.hpp"

namespace convgraph {

// A topological order of GRAPH's nodes. With BY_MEMORY, chosen to keep few bytes alive: a list
// schedule that runs, among the nodes whose inputs are ready, the one that frees the most bytes
// net of what it
// allocates (a value is freed when its last reader has run, a view with the value it views;
// function inputs, constants and outputs are never freed), ties going to the earlier node of
// toposort(). Sizes come from static shapes (an unknown dim counts as 1). Without BY_MEMORY,
// toposort() itself wherever that is valid. Either way a node that writes an output into an
// input's buffer (graph/inplace.hpp) runs after every other reader of that input: for values
// computed in the graph the in-place pass only accepts readers that precede it in any order, but
// a shared variable updated in place is read by nodes that need not. Linear in the graph's size,
// with a logarithmic factor.
std::vector<Node*> schedule_nodes(const FunctionGraph& graph, bool by_memory);

}  // namespace convgraph
