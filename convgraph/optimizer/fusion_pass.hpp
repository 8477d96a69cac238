// The elementwise fusion pass (tag `fusion`, in FAST_RUN), as Theano's elemwise fusion: connected
// subgraphs of Elemwise and Cast nodes on the CPU become one FusedElemwise node each, whose
// generated kernel makes one pass over memory instead of one per op.
//
// Rules:
//   - a group is a set of Elemwise nodes (made with recorded broadcast patterns, as the builder
//     functions make them) and Cast nodes whose values stay on the CPU, connected through the
//     values they pass each other, and convex: no path leaves the group and comes back;
//   - the group iterates over the shape of its outputs: every value read from outside broadcasts
//     against it with the patterns its readers recorded (an axis broadcasts only where its static
//     dim is 1), and every value read outside the group (or returned by the function) is an
//     output of the fused node, so must have that whole shape; a merge that breaks this is not
//     made;
//   - rank-0 constants become constants of the kernel; other constants are inputs;
//   - a Reduce (sum, or mean of floats, over at least one axis) reading an output of the group
//     becomes a reduced output of the kernel (a bias gradient, a mean), computed in the same pass;
//     the output it reads stays an output too when something else reads it (the ReLU backward's
//     gradient, which the convolution's backward also reads, next to its bias gradient);
//   - a group of one node stays as it is, unless a reduction joins it.
// The back end the nodes compile for is codegen.backend's, read from the compile's flags.
#pragma once

#include "convgraph/base/config.hpp"
#include "convgraph/graph/function_graph.hpp"

namespace convgraph {

// Fuses GRAPH's elementwise subgraphs as above; returns the number of fused nodes made.
int fuse_elementwise(FunctionGraph& graph, const Config& config);

}  // namespace convgraph
