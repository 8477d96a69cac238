// FusedElemwise: one node computing a connected subgraph of elementwise ops (Elemwise, Cast) and
// sums or means of its values, with one generated kernel (convgraph/codegen/). An output may be
// an elementwise value and another output its reduction (a gradient and its bias gradient).
//
// The fusion pass (convgraph/optimizer/fusion_pass.hpp) builds these nodes inside compile(); the
// node holds the FusedIR its kernel runs and a copy of the ops it replaced (a FusedSubgraph),
// whose node-by-node evaluation with the ops' own perform() is both the node's perform() and the
// reference DebugMode compares the generated code with.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "convgraph/codegen/fused_ir.hpp"
#include "convgraph/codegen/fused_kernel.hpp"
#include "convgraph/graph/inplace.hpp"
#include "convgraph/ops/kernel_op.hpp"

namespace convgraph {

// The ops a fused node replaced, as a small program: each step applies an op to fused-node
// inputs, constants and earlier steps' results; OUTPUTS name the steps whose results are the
// fused node's outputs, in order.
struct FusedSubgraph {
  struct Ref {
    enum class Kind { input, constant, step };
    Kind kind = Kind::input;
    int index = 0;  // into the fused node's inputs, CONSTANTS or STEPS
  };
  struct Step {
    std::shared_ptr<const Op> op;  // single-output: Elemwise, Cast or Reduce
    std::vector<Ref> args;
  };
  std::vector<Tensor> constants;
  std::vector<Step> steps;
  std::vector<int> outputs;

  // Runs every step with its op's perform() on INPUTS; returns the outputs.
  std::vector<Tensor> evaluate(const std::vector<Tensor>& inputs) const;
  // "relu(add(i0, i1))", one expression per output separated by ", ", shared steps repeated
  // (a reduction as "sum{0, 2, 3}(...)"); when that is longer than MAX_CHARS, the short form
  // "7 ops: add, relu, where, ..." (the distinct ops in order, then the reduction).
  std::string describe(std::size_t max_chars = 100) const;
};

// The reference of a FusedElemwise: evaluates its FusedSubgraph op by op (for DebugMode).
class FusedSubgraphOp final : public Op {
 public:
  explicit FusedSubgraphOp(FusedSubgraph subgraph) : subgraph_(std::move(subgraph)) {}
  const FusedSubgraph& subgraph() const { return subgraph_; }

  std::string name() const override { return "FusedSubgraph"; }
  std::string str() const override;  // "FusedSubgraph{relu(add(i0, i1))}"
  bool equals(const Op& other) const override;
  std::size_t hash() const override;
  // The types the replaced ops give for INPUTS (each step's make_outputs in turn).
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;

 private:
  FusedSubgraph subgraph_;
};

// Iteration axes are those of the IR (rank ir.rank()); input I has the IR's broadcast flags, so
// its static dims must be 1 where they are set. Outputs have the iteration shape, or for a
// reduced output that shape without its reduced axes (kept as 1 where its reduction keeps dims).
//
// In place (graph/inplace.hpp): when no output is reduced, an output may be computed into any input
// of its dtype that the kernel does not broadcast (the generated loop and the interpreter read
// every input's element before writing the outputs' element at the same index). The in-place form
// prints as "Fused{...,inplace}" (output 0 into input 0), "Fused{...,inplace=J}" (output 0 into
// input J) or "Fused{...,inplace=K:J}".
class FusedElemwise final : public KernelOp, public InplaceCapable {
 public:
  // REFERENCE must compute what IR computes (DebugMode checks that each run); BACKEND is where
  // make_kernel compiles the IR.
  FusedElemwise(codegen::FusedIR ir, FusedSubgraph reference, codegen::FusedBackend backend);

  const codegen::FusedIR& ir() const { return ir_; }
  codegen::FusedBackend backend() const { return backend_; }
  const FusedSubgraph& reference() const { return reference_->subgraph(); }

  std::string name() const override { return "FusedElemwise"; }
  // "FusedElemwise [llvm]" or "FusedElemwise [interpreter]": the profile's implementation column
  // says which back end runs the kernel.
  std::string implementation_name() const override;
  // "Fused{relu(add(i0, i1))}" or "Fused{5 ops: gt, where, ...}".
  std::string str() const override;
  // Equal IR text (the cache key of the generated code) and back end.
  bool equals(const Op& other) const override;
  std::size_t hash() const override;
  // Without a reduction, inputs in one blocked layout give outputs in that layout, as Elemwise
  // (a reduction reads logical inputs only).
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  bool understands_layouts() const override { return true; }
  std::vector<ShapeDims> infer_shape(const Node& node,
                                     const std::vector<ShapeDims>& input_shapes) const override;
  // Fused nodes are made by the fusion pass inside compile(), after gradients were built: they
  // have no gradient and no R-op (UnsupportedError).
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const override;
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const override;
  // The replaced ops, one after the other.
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;
  // Compiles the IR once for the node. With the LLVM back end and static shapes, the code for
  // contiguous operands of those shapes is generated (or loaded from the caches) here, so that
  // the first call generates nothing.
  std::shared_ptr<const Kernel> make_kernel(const Node& node) const override;
  std::shared_ptr<const Op> reference_op() const override { return reference_; }

  std::vector<std::pair<int, int>> inplace_candidates(const Node& node) const override;
  std::shared_ptr<const Op> with_inplace(int output, int input) const override;
  std::vector<std::pair<int, int>> destroy_map() const override;

 private:
  codegen::FusedIR ir_;
  std::shared_ptr<const FusedSubgraphOp> reference_;
  codegen::FusedBackend backend_;
  std::string description_;
  int inplace_output_ = -1;  // with INPLACE_INPUT_: the destroy_map pair, or -1
  int inplace_input_ = -1;
};

}  // namespace convgraph
