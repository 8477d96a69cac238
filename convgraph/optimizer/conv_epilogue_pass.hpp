// The convolution epilogue pass (tag `conv_epilogue`, in FAST_RUN, at 94: after the lowering, so
// it sees concrete nodes, and before elementwise fusion, which would otherwise take the bias add
// into a fused kernel first). It folds what follows a forward convolution into the convolution
// node, as ops/conv/conv_epilogue.hpp defines it:
//
//   conv(x, w) [+ bias] [+ residual] [relu]        e.g. relu(conv(x, w) + b + shortcut)
//
// Rules:
//   - the convolution is a concrete forward node without an epilogue, built by a registry row
//     (optimizer/conv_registry.hpp) whose hooks support the epilogue; the steps are taken in the
//     order above for as long as the row supports the longer epilogue, so a row that supports
//     none (the reference, or a GPU implementation) is left unfused, and so is every node when a
//     flag (conv.impl) forces such an implementation;
//   - each step reads the value before it as its only reader (the convolution's output, then the
//     sum so far: not read by another node, not a function output), so nothing needs the values
//     that disappear; in the training graph the ReLU gradient reads the ReLU's output, the bias
//     gradient the gradient, so the pre-activation is dead after the forward pass;
//   - bias: an add of a tensor of the output's rank and dtype with static dim 1 on every axis but
//     the channel axis (a (1, K, 1, 1) tensor, or a (K,) vector dimshuffled to that), which the
//     node takes as the (K,) vector;
//   - residual: an add of a tensor of the output's dtype and rank that does not broadcast against
//     it (and that it does not broadcast against) on any axis;
//   - relu: the elementwise relu.
// A step that does not match ends the epilogue; the steps before it are still folded.
#pragma once

#include "convgraph/base/config.hpp"
#include "convgraph/graph/function_graph.hpp"

namespace convgraph {

// Folds epilogues into GRAPH's convolutions as above; returns the number of nodes folded into.
int fold_conv_epilogues(FunctionGraph& graph, const Config& config);

}  // namespace convgraph
