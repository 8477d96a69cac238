// Lowering abstract convolutions to the concrete implementations of the registry
// (conv_registry.hpp), and the check that none is left.
//
//   conv_impl (position 15)          with conv.impl set: each abstract convolution goes to the
//                                    first listed implementation that takes it; the passes
//                                    below then leave every node alone
//   conv_dnn, conv_dnn_gpu (20)      the vendor libraries (oneDNN, cuDNN)
//   conv_gemm, conv_gemm_gpu (30)    im2col + GEMM (CorrMM, GpuCorrMM)
//   conv_check (40)                  an UnsupportedError for a convolution still abstract, listing
//                                    every implementation of its device and why it did not apply
//
// Each lowering pass applies the registry rows whose `pass` is its name, in registry order,
// skipping rows the flags exclude (optimizer_excluding with one of their tags). A row that
// declines a node says why (PassContext::decline), for the check's message.
#pragma once

#include <string>

#include "convgraph/optimizer/conv_registry.hpp"
#include "convgraph/optimizer/pass_database.hpp"

namespace convgraph {

// The replacement IMPLEMENTATION builds for NODE (an abstract convolution), or an empty vector
// after recording why it declines (a TypeError / ValueError from its build counts as a decline).
std::vector<Variable> lower_with(const ConvImplementation& implementation, Node& node,
                                 const PassContext& ctx);

// The lowering pass named PASS_NAME (see above), as an entry of the pass database at POSITION:
// tagged fast_run, fast_compile and every tag of the registry rows it applies.
GraphPass conv_lowering_pass(std::string pass_name);
PassEntry conv_lowering_entry(const std::string& pass_name, double position,
                              std::string description);

// The conv_impl pass: with conv.impl set, each abstract convolution is lowered by the first
// listed implementation (not excluded by optimizer_excluding) that takes it. An unknown name in
// conv.impl is a FlagError.
void select_conv_implementations(FunctionGraph& graph, const PassContext& ctx);

// Throws UnsupportedError for the first abstract convolution left in GRAPH, naming the node, the
// flags that ruled implementations out and why each implementation of its device declined.
void check_no_abstract_conv(FunctionGraph& graph, const PassContext& ctx);

// "corrmm (conv_gemm)": how the declines and the check name a row.
std::string implementation_label(const ConvImplementation& implementation);

}  // namespace convgraph
