// The reference back end of fused kernels: runs a FusedIR's instructions over blocks of elements,
// with the very scalar functions of the elementwise kernels, so that its results equal those of
// the unfused Elemwise and Cast ops bit for bit (reductions: as the Reduce op accumulates, up to
// the order of the additions). Used where LLVM is not built in, when codegen.backend says so, and
// by the tests as the reference of the generated code.
#pragma once

#include <cstdint>

#include "convgraph/codegen/fused_ir.hpp"
#include "convgraph/codegen/loop_plan.hpp"

namespace convgraph::codegen {

// Runs IR over the elements of PLAN whose outermost loop index lies in [BEGIN, END), with the
// operands' origins DATA (PLAN's, or with private accumulators: for_outer_ranges), ORing the
// kStatus* bits of any integer division by zero or negative integer exponent into *STATUS.
// Thread-safe: calls on disjoint ranges or disjoint accumulators may run concurrently.
void interpret_range(const FusedIR& ir, const LoopPlan& plan, void* const* data, std::int64_t begin,
                     std::int64_t end, std::int64_t* status);

}  // namespace convgraph::codegen
