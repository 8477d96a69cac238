// Binding tensors to a FusedIR and planning the loop that both back ends run.
//
// A call's tensors are checked against the IR (count, dtype, device, shapes), the iteration shape
// is worked out, and the loop is simplified the way the elementwise kernels simplify theirs:
// size-1 axes dropped and neighbouring axes merged where every operand allows it, so contiguous
// data becomes one long innermost loop. The axes keep the IR's order (memory order for
// contiguous tensors: a bias gradient over N, H, W next to the gradient itself runs over N, C,
// H*W); only when the outermost axis is reduced and too short to split evenly across the threads
// do the axes no output reduces move outward (see for_outer_ranges).
//
// Operands are the inputs, then the outputs; a reduced output's operand is an accumulator buffer
// (fused_accumulator_dtype), set to the reduction's identity before the loop and converted into
// the output after it (BoundCall::finish). An elementwise output is written in place.
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
  // The accumulator of one reduced output: operand OPERAND, contiguous over the output's kept axes
  // (stride 0 along the reduced ones).
  struct Accumulator {
    std::size_t operand = 0;
    Tensor tensor;
    FusedReduceKind kind = FusedReduceKind::sum;
  };

  // The loop extents, outermost first; at least one axis (a single element is [1]).
  std::vector<std::int64_t> dims;
  // Whether some output reduces each loop axis.
  std::vector<bool> reduced;
  // Element strides of each operand along each loop axis (0 where it is broadcast or reduced).
  std::vector<std::vector<std::int64_t>> strides;
  // The address of each operand's element at the loop's origin.
  std::vector<void*> data;
  // DTypes of the operands as stored (accumulators for reduced outputs).
  std::vector<DType> dtypes;
  // The reduced outputs' accumulators, in output order.
  std::vector<Accumulator> accumulators;

  std::int64_t numel() const;
  // What a generated kernel is specialised for: the loop rank, which axes some output reduces,
  // and per operand whether its innermost stride is 1 (c), 0 (b: broadcast, or reduced along the
  // innermost axis) or anything else (s). E.g. "r3 k.rr c.b.c". Which outputs are reduced is
  // the IR's.
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
  std::vector<std::int64_t> reduced_counts_;  // per accumulator: the elements it reduces
  LoopPlan plan_;
};

// The shape of output K of IR for iteration shape SHAPE: SHAPE, or for a reduced output SHAPE
// without its reduced axes (kept as 1 with keepdims).
Shape fused_output_shape(const FusedIR& ir, std::size_t k, const Shape& shape);
// The iteration shape that INPUTS imply (broadcast axes and axes no input covers have extent 1).
Shape infer_iteration_shape(const FusedIR& ir, const std::vector<Tensor>& inputs);

// The threads a fused kernel uses: cpu_threads(), so the `threads` value a Function was compiled
// with (the process-wide flag outside a Function), 0 meaning OpenMP's default.
int codegen_threads();
// Runs BODY(begin, end, data) over ranges of the plan's outermost axis, DATA being the operands'
// origins to use, in parallel when the loop is large enough to pay for it. Where an accumulator
// is reduced along that axis, the axis is cut into one range per thread, and each thread but the
// first accumulates into a private copy (set to the identity); the copies are folded into the
// plan's after the loop in thread order, so the result depends on the thread count but not on the
// run. BODY must not throw.
void for_outer_ranges(const LoopPlan& plan,
                      const std::function<void(std::int64_t, std::int64_t, void* const*)>& body);

}  // namespace convgraph::codegen
