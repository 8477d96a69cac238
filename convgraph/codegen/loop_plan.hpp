// Binding tensors to a FusedIR and planning the loop that both back ends run.
//
// A call's tensors are checked against the IR (count, dtype, device, shapes), the iteration shape
// is worked out, and the loop is simplified the way the elementwise kernels simplify theirs:
// size-1 axes dropped and neighbouring axes merged where every operand allows it, so contiguous
// data becomes one long innermost loop. For a reduction whose innermost axis is reduced, the kept
// axes move outward, so that the outermost loop axis (the one split across threads) is a kept
// one and the reduced axes stay innermost in memory order.
//
// Operands are the inputs, then the outputs; for a reduction an output operand is an accumulator
// buffer (fused_accumulator_dtype), set to the reduction's identity before the loop and converted
// into the output after it (BoundCall::finish).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "convgraph/codegen/fused_ir.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph::codegen {

// Bits of the status word a kernel reports (ORed over the elements it ran).
inline constexpr std::int64_t kStatusDivisionByZero = 1;
inline constexpr std::int64_t kStatusNegativeExponent = 2;

struct LoopPlan {
  // The loop extents, outermost first; at least one axis (a single element is [1]).
  std::vector<std::int64_t> dims;
  // Whether each loop axis is reduced.
  std::vector<bool> reduced;
  // Element strides of each operand along each loop axis (0 where it is broadcast or reduced).
  std::vector<std::vector<std::int64_t>> strides;
  // The address of each operand's element at the loop's origin.
  std::vector<void*> data;
  // DTypes of the operands as stored (accumulators for reduced outputs).
  std::vector<DType> dtypes;
  // For a reduction: the accumulators (the last operands, contiguous) and the reduction's kind.
  std::vector<Tensor> accumulators;
  FusedReduceKind reduce_kind = FusedReduceKind::sum;

  std::int64_t numel() const;
  // What a generated kernel is specialised for: the loop rank, which axes are reduced, and per
  // operand whether its innermost stride is 1 (c), 0 (b) or anything else (s). E.g.
  // "r3 k.rr c.b.c".
  std::string signature() const;
};

// A call of a fused kernel on concrete tensors, ready to run.
class BoundCall {
 public:
  // Checks INPUTS and OUTPUTS against IR (outputs must be allocated: see allocate_outputs) and
  // plans the loop. LOOP_SHAPE, when given, is the iteration shape; otherwise it is inferred from
  // the inputs' unbroadcast axes and the outputs' unreduced ones (an axis none of them determines
  // has extent 1). Throws ShapeError / TypeError / UnsupportedError naming the kernel, the tensor
  // and what was expected.
  BoundCall(const FusedIR& ir, const std::vector<Tensor>& inputs,
            const std::vector<Tensor>& outputs, const Shape* loop_shape = nullptr);

  const LoopPlan& plan() const { return plan_; }
  const Shape& iteration_shape() const { return shape_; }
  // True when the loop has no element to visit (an output may still need its identity written).
  bool empty() const { return plan_.numel() == 0; }
  // Converts the accumulators into the outputs (reductions only) and reports STATUS bits as a
  // ValueError naming the kernel.
  void finish(std::int64_t status) const;

 private:
  const FusedIR& ir_;
  Shape shape_;
  std::vector<Tensor> outputs_;
  std::vector<Tensor> accumulators_;
  std::int64_t reduced_count_ = 1;
  LoopPlan plan_;
};

// The shape of every output of IR for iteration shape SHAPE: SHAPE, or SHAPE without the reduced
// axes.
Shape fused_output_shape(const FusedIR& ir, const Shape& shape);
// The iteration shape that INPUTS imply (broadcast axes and axes no input covers have extent 1).
Shape infer_iteration_shape(const FusedIR& ir, const std::vector<Tensor>& inputs);

// The threads a fused kernel uses: the `threads` flag, 0 meaning OpenMP's default.
int codegen_threads();
// Runs BODY(begin, end, data) over ranges of the plan's outermost axis, DATA being the operands'
// origins to use, in parallel when the loop is large enough to pay for it. When that axis is
// reduced, each thread but the first accumulates into private accumulators (set to the identity)
// that are folded into the plan's after the loop. BODY must not throw.
void for_outer_ranges(const LoopPlan& plan,
                      const std::function<void(std::int64_t, std::int64_t, void* const*)>& body);

}  // namespace convgraph::codegen
