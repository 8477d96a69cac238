// Shape-changing views and copies: reshape, dimshuffle (transpose, add or drop broadcastable
// axes), flip.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "convgraph/graph/dim.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/graph/variable.hpp"

namespace convgraph {

// At most one entry may be the constant -1 (inferred from the element count).
Variable reshape(const Variable& x, const ShapeDims& new_shape);
// NEW_SHAPE: an int64 vector variable of static length.
Variable reshape(const Variable& x, const Variable& new_shape);
Variable flatten(const Variable& x);  // to rank 1

// PATTERN[i] is the input axis that becomes output axis i, or -1 for a new axis of size 1 (a
// broadcastable axis). Input axes left out must have static dim 1 (they are dropped).
Variable dimshuffle(const Variable& x, const std::vector<int>& pattern);
// Reverses the axes when PERM is empty.
Variable transpose(const Variable& x, const std::vector<int>& perm = {});
Variable expand_dims(const Variable& x, int axis);
Variable squeeze(const Variable& x, const std::vector<int>& axes);

// Reverses X along each of AXES.
Variable flip(const Variable& x, const std::vector<int>& axes);

// ---- the ops (for passes that match them; users call the functions above) ----

// Inputs: X and the target shape, an int64 vector of static length NDIM (a constant when the
// shape is static). At most one entry is -1. The output is a view of X when X is contiguous.
class Reshape final : public Op {
 public:
  explicit Reshape(int ndim);
  int ndim() const { return ndim_; }
  std::string name() const override { return "Reshape"; }
  std::string str() const override;
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
  std::vector<std::pair<int, int>> view_map() const override { return {{0, 0}}; }

 private:
  int ndim_;
};

// Permutes axes, inserts axes of size 1 (pattern entry -1) and drops axes of static size 1 (left
// out of the pattern). Always a view.
class DimShuffle final : public Op {
 public:
  explicit DimShuffle(std::vector<int> pattern);
  const std::vector<int>& pattern() const { return pattern_; }
  std::string name() const override { return "DimShuffle"; }
  std::string str() const override;  // "DimShuffle{1,0,x}"
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
  std::vector<std::pair<int, int>> view_map() const override { return {{0, 0}}; }

 private:
  std::vector<int> pattern_;
};

// Reverses the (non-negative, sorted, distinct) AXES. A view with negative strides.
class Flip final : public Op {
 public:
  explicit Flip(std::vector<int> axes);
  const std::vector<int>& axes() const { return axes_; }
  std::string name() const override { return "Flip"; }
  std::string str() const override;  // "Flip{0,2}"
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
  std::vector<std::pair<int, int>> view_map() const override { return {{0, 0}}; }

 private:
  std::vector<int> axes_;
};

}  // namespace convgraph
