// Creating tensors in the graph: alloc (broadcast a value to a shape), zeros/ones/full, *_like,
// arange.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "convgraph/graph/dim.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/graph/variable.hpp"

namespace convgraph {

// VALUE (any rank, broadcasting to the trailing axes of SHAPE) broadcast to SHAPE.
Variable alloc(const Variable& value, const ShapeDims& shape);
Variable zeros(const ShapeDims& shape, DType dtype);
Variable ones(const ShapeDims& shape, DType dtype);
Variable full(const ShapeDims& shape, double value, DType dtype);
Variable zeros_like(const Variable& x);
Variable ones_like(const Variable& x);
Variable full_like(const Variable& x, double value);
// START, START+STEP, ... before STOP (STEP != 0), as in numpy.
Variable arange(const Dim& start, const Dim& stop, const Dim& step, DType dtype);

// ---- the ops (for passes that match them; users call the functions above) ----

// Inputs: VALUE, then one integer scalar per output dim. VALUE aligns with the trailing output
// axes and is stretched along the leading axes it lacks and along the axes in
// VALUE_BROADCASTABLE (those of static dim 1 in its type), as elementwise ops broadcast: a size-1
// axis the type does not declare is not stretched at run time, so the gradient keeps VALUE's shape.
class Alloc final : public Op {
 public:
  explicit Alloc(std::vector<bool> value_broadcastable);
  const std::vector<bool>& value_broadcastable() const { return value_broadcastable_; }
  std::string name() const override { return "Alloc"; }
  bool equals(const Op& other) const override;
  std::size_t hash() const override;
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  std::vector<ShapeDims> infer_shape(const Node& node,
                                     const std::vector<ShapeDims>& input_shapes) const override;
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const override;
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const override;
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;
  bool writes_given_outputs() const override { return true; }
  // Folding would store the filled tensor in the graph; filling it at run time costs no more
  // than reading it.
  bool foldable() const override { return false; }

 private:
  std::vector<bool> value_broadcastable_;
};

// Inputs: start, stop, step (integer or float scalars). Output: the 1-D DTYPE tensor
// start, start + step, ... before stop, of length max(0, ceil((stop - start) / step)).
class ARange final : public Op {
 public:
  explicit ARange(DType dtype);
  DType dtype() const { return dtype_; }
  std::string name() const override { return "ARange"; }
  std::string str() const override;  // "ARange{int64}"
  bool equals(const Op& other) const override;
  std::size_t hash() const override;
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  std::vector<ShapeDims> infer_shape(const Node& node,
                                     const std::vector<ShapeDims>& input_shapes) const override;
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const override;
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;

 private:
  DType dtype_;
};

}  // namespace convgraph
