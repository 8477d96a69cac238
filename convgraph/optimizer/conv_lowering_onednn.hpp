// conv_dnn on the CPU: lowering of the abstract convolutions to oneDNN (spec 7.2 and convgraph's
// decision 1: conv_meta -> conv_dnn -> conv_gemm).
#pragma once

#include <vector>

#include "convgraph/optimizer/pass_database.hpp"

namespace convgraph {

// AbstractConv -> OneDnnConv of the same direction and parameters, for float32 CPU nodes with
// shared kernels. Declines (returns {} and records why with ctx.decline) float16 / float64,
// unshared, non-CPU nodes, dnn.enabled=False, and every node when oneDNN is not built in.
std::vector<Variable> lower_conv_to_onednn(Node& node, const PassContext& ctx);

}  // namespace convgraph
