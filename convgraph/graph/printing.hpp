// Human-readable views of a graph: debugprint (an indented tree, one line per node) and DOT.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "convgraph/graph/function_graph.hpp"
#include "convgraph/graph/variable.hpp"

namespace convgraph {

struct DebugPrintOptions {
  bool print_types = true;  // dtype and static shape of every variable
  // With print_types: the layout of every variable ("{logical}" too), not only of those the
  // layout pass keeps in another one ("{nChw8c}").
  bool print_layouts = false;
  int max_depth = -1;  // levels of inputs shown below each output; -1: unlimited
  // Levels drawn as " |" bars. A line deeper than this keeps max_indent bars and shows its depth
  // as "[depth N] " before the op, so that the text grows linearly with the graph however deep
  // it is. -1: no limit (a chain of n nodes then prints about n^2 characters).
  int max_indent = 32;
};

// One line per variable: the op with its parameters (or the input's name, followed by [shared]
// after the id for a shared variable, or the constant's value), an id ([id A], [id B], ... in order
// of first appearance), the variable's name if it has one, and its type. A node that was already
// printed is shown again by its id only, without its inputs, so shared subgraphs appear once.
// Multi-output nodes print "Op.k" for output k. A value kept in a blocked layout shows it after its
// type: "float32[8, 64, 56, 56]{nChw8c}".
//   Elemwise{add} [id A] 'z' float32[8, ?]
//    |Elemwise{mul} [id B] float32[8, ?]
//    | |x [id C] float32[8, ?]
//    | |TensorConstant{2} [id D] float32[]
//    |Elemwise{mul} [id B] (see above)
// Beyond max_indent levels (here 2), lines carry their depth instead of more bars:
//    | |Elemwise{exp} [id E] float32[8, ?]
//    | |[depth 3] Elemwise{exp} [id F] float32[8, ?]
//    | |[depth 4] x [id C] float32[8, ?]
std::string debugprint(const std::vector<Variable>& outputs, const DebugPrintOptions& options = {});
std::string debugprint(const Variable& output, const DebugPrintOptions& options = {});
std::string debugprint(const FunctionGraph& graph, const DebugPrintOptions& options = {});

// debugprint of a compiled function's graph whose last UPDATED.size() outputs are the new values
// of the shared variables UPDATED: the other outputs as debugprint(graph) shows them, then a line
// "Updates:" and, for each update, a line "'w' <-" above the tree of its new value (ids go on from
// the outputs'; a node printed above shows as "(see above)").
std::string debugprint_with_updates(const FunctionGraph& graph,
                                    const std::vector<Variable>& updated,
                                    const DebugPrintOptions& options = {});

// The ids debugprint(OUTPUTS) gives the nodes of their graph, with unlimited depth ("A", "B", ...,
// in the same order), so that other messages can name a node as debugprint shows it. Walks the
// graph without recursion.
std::unordered_map<const Node*, std::string> debugprint_node_ids(
    const std::vector<Variable>& outputs);
std::unordered_map<const Node*, std::string> debugprint_node_ids(const FunctionGraph& graph);

// Graphviz DOT: one box per node, one ellipse per input or constant, edges labelled with types.
std::string to_dot(const std::vector<Variable>& outputs);
std::string to_dot(const FunctionGraph& graph);

}  // namespace convgraph
