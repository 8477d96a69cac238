// The interface between the fused-kernel front end and the LLVM back end (convgraph/codegen/llvm/,
// compiled only where LLVM is built in: CONVGRAPH_HAVE_LLVM).
#pragma once

#include <memory>
#include <string>

#include "convgraph/codegen/fused_kernel.hpp"

namespace convgraph::codegen {

// A kernel running code that LLVM generates for IR. Each loop shape class (loop rank, reduced
// axes, innermost strides: LoopPlan::signature) gets its own specialised function, generated on
// first use, or loaded from the memory or disk cache.
std::shared_ptr<const FusedKernel> make_llvm_kernel(const FusedIR& ir);
// Drops the in-memory code cache (see clear_codegen_memory_cache).
void clear_llvm_memory_cache();
// The message set by inject_codegen_failure_for_testing (empty when off).
std::string injected_codegen_failure();

}  // namespace convgraph::codegen
