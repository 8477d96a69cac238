// The flags of the fused-kernel code generator: which back end runs fused kernels, what happens
// when LLVM cannot compile one, and the on-disk cache of generated code.
#pragma once

#include <vector>

#include "convgraph/base/config.hpp"

namespace convgraph {

// Appends codegen.backend, codegen.fallback, codegen.disk_cache and codegen.cache_dir to FLAGS,
// in display order.
void declare_codegen_flags(std::vector<FlagSpec>& flags);

}  // namespace convgraph
