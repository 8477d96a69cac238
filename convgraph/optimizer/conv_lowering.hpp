// Lowering of the abstract convolutions to concrete implementations, and the check that none is
// left (spec 7.2, 7.3 and convgraph's decisions 1-2).
#pragma once

#include "convgraph/optimizer/pass_database.hpp"

namespace convgraph {

// conv_gemm on the CPU: AbstractConv -> CorrMM of the same direction and parameters.
std::vector<Variable> lower_conv_to_corrmm(Node& node, const PassContext& ctx);

// Throws UnsupportedError for the first abstract convolution left in GRAPH, naming the node, the
// lowering tags the flags excluded and why each candidate declined.
void check_no_abstract_conv(FunctionGraph& graph, const PassContext& ctx);

}  // namespace convgraph
