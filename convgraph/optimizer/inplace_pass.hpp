// The in-place pass (tag `inplace`, last in FAST_RUN): lets an op that can (graph/inplace.hpp)
// write its output into the buffer of an input nobody needs afterwards, as Theano's
// inplace_elemwise_optimizer with its DestroyHandler. An elementwise chain such as
// relu(x * 2 + 1) then runs in one buffer instead of three.
#pragma once

#include "convgraph/graph/function_graph.hpp"
#include "convgraph/optimizer/pass_database.hpp"

namespace convgraph {

// Replaces each in-place-capable node by its in-place form where one of its candidate inputs V
// may be destroyed: V is computed by a node (not a graph input, a shared variable or a
// constant), is not a graph output, is not itself a view of another value (its producer's
// view_map), is read by the node once, and every other reader of V is an ancestor of the node
// (so it runs before it in every schedule), is no view of V and destroys nothing of V. What the
// graph cannot know (a buffer held by a view an op made without declaring it, or by the caller)
// the executor checks at run time before it hands the buffer over (runtime/plan.hpp).
//
// With updates_inplace=early, an output that is the update of a shared variable (and read by
// nothing else) may also be computed into that variable's own buffer, when nothing writes into
// the variable or a view of it and no view of it is a graph output; the plan then runs every
// other reader of the old value, through views too (readers_through_views), first
// (planner/schedule.hpp), and the function decides at each call whether the buffer may be
// overwritten (planner/function.hpp).
// Returns the number of nodes made in-place.
int make_inplace(FunctionGraph& graph, const PassContext& ctx);

// Every node that reads V's buffer other than through EXCEPT: V's readers and, through the
// outputs of readers that view V (their view_map), those views' readers, transitively. A node
// writing into V must run after all of them. Sets *ESCAPES when V or a view of it is a graph
// output, and *DESTROYED when one of them writes into V or a view of it.
std::vector<Node*> readers_through_views(const FunctionGraph& graph, const Variable& v,
                                         const Node* except, bool* escapes = nullptr,
                                         bool* destroyed = nullptr);

}  // namespace convgraph
