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
// Returns the number of nodes made in-place.
int make_inplace(FunctionGraph& graph, const PassContext& ctx);

}  // namespace convgraph
