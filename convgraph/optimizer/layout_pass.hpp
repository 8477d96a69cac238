// The layout pass (tag `layout`, in FAST_RUN, at 96: after the convolution lowering, the
// epilogues and elementwise fusion, before the in-place pass). It keeps oneDNN's blocked layouts
// (runtime/layout.hpp: nChw8c on AVX2, nChw16c on AVX-512) on the values passed between
// convolutions, so that a chain of convolutions runs without the reorders to and from the
// logical order that each oneDNN node does around its primitive otherwise.
//
// Rules:
//   - a blocked value is the output of a OneDnnConv node (forward or gradient with respect to the
//     inputs) whose primitive writes that blocked layout anyway on the node's static shapes (under
//     the process-wide oneDNN layout policy: the 1x1 layers it runs on plain data are left
//     alone), with channels a multiple of the block (so the buffer is no larger than the logical
//     one);
//   - or the output of an elementwise node (Elemwise, or FusedElemwise without a reduction) all
//     of whose inputs are blocked values of the output's shape in one layout, or hold a single
//     element (a scalar or a tensor of dims 1, which broadcasts the same in any order); a
//     per-channel bias or any other broadcast keeps the node logical;
//   - a value stays blocked only when a reader takes it as it is: a OneDnnConv input whose
//     primitive reads that layout (the image of a forward or weight gradient, the output
//     gradient of a gradient, the residual of a forward whose primitive writes that layout), or
//     a blocked elementwise node; an elementwise node stays blocked only when it saves at least as
//     many reorders as it adds (its blocked inputs against its outputs that a logical reader
//     reads);
//   - every other reader (a graph output, a reduction, an op that knows no layouts) reads one
//     LayoutReorder to the logical order, shared by all of them.
// So the pass only removes reorders: each blocked value had its reorder out of the producer's
// primitive and one into each blocked reader's; it keeps at most one. It can cost memory: a
// blocked value that a later node (a weight gradient) reads lives beside its logical copy.
// docs/optimizer.md has what it finds on the network benchmark. Off with
// optimizer_excluding=layout. Without oneDNN in the build it changes nothing.
#pragma once

#include "convgraph/base/config.hpp"
#include "convgraph/graph/function_graph.hpp"

namespace convgraph {

// Returns the number of values given a blocked layout.
int choose_layouts(FunctionGraph& graph, const Config& config);

}  // namespace convgraph
