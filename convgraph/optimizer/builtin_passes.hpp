// The built-in passes of convgraph and the rewrites they are made of.
#pragma once

#include "convgraph/optimizer/pass_database.hpp"

namespace convgraph {

// Registers every built-in pass into DB, in order. The one place to read to see the pipeline.
void register_builtin_passes(PassDatabase& db);

// The canonicalizing local rewrites (exposed for tests).
std::vector<Variable> rewrite_flip_into_conv(Node& node, const PassContext& ctx);
std::vector<Variable> rewrite_dimshuffle_of_dimshuffle(Node& node, const PassContext& ctx);
std::vector<Variable> rewrite_elemwise_identity(Node& node, const PassContext& ctx);
std::vector<Variable> rewrite_remove_proven_assert(Node& node, const PassContext& ctx);

}  // namespace convgraph
