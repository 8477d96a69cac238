// Emits the LLVM IR of one fused kernel specialised for one loop shape class (private to the LLVM
// back end).
//
// The function has the C signature
//   void f(void* const* data, const int64_t* dims, const int64_t* strides,
//          int64_t begin, int64_t end, int64_t* status)
// DATA[k] is operand k's origin (inputs, then outputs or accumulators), DIMS the loop extents,
// STRIDES[k * rank + axis] operand k's element stride along AXIS; the outermost axis runs from
// BEGIN to END only, so that callers split it across threads. STATUS receives kStatus* bits
// (atomically ORed). The innermost loop is written for LLVM's loop vectorizer: unit-stride and
// broadcast operands are specialised (their stride is not read), broadcast loads are hoisted, and
// a reduction along it accumulates in a register.
#pragma once

#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>

#include <memory>
#include <string>

#include "convgraph/codegen/fused_ir.hpp"
#include "convgraph/codegen/loop_plan.hpp"

namespace convgraph::codegen {

std::unique_ptr<llvm::Module> emit_fused_module(llvm::LLVMContext& context, const FusedIR& ir,
                                                const LoopPlan& plan,
                                                const std::string& function_name);

}  // namespace convgraph::codegen
