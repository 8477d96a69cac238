// Basic indexing: integer indices and slices with steps, reading (subtensor) and writing into a
// copy (inc_subtensor, set_subtensor). Bounds follow Python: negative values count from the end,
// slice bounds are clamped, an integer index out of range is an IndexError-like ShapeError.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "convgraph/graph/dim.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/graph/variable.hpp"

namespace convgraph {

// One entry of an index: an integer (the axis is dropped) or a slice start:stop:step (any part
// may be absent). Values may be constants or symbolic int64 scalars.
struct IndexItem {
  bool is_slice = true;
  std::optional<Dim> start, stop, step;  // for a slice; START holds the index otherwise

  static IndexItem index(Dim i) { return {false, std::move(i), std::nullopt, std::nullopt}; }
  static IndexItem slice(std::optional<Dim> start = std::nullopt,
                         std::optional<Dim> stop = std::nullopt,
                         std::optional<Dim> step = std::nullopt) {
    return {true, std::move(start), std::move(stop), std::move(step)};
  }
  static IndexItem all() { return slice(); }
};

// X[items...]; axes beyond the items are kept whole.
Variable subtensor(const Variable& x, const std::vector<IndexItem>& items);
// A copy of X with Y added into X[items...] (Y broadcasts to the indexed shape).
Variable inc_subtensor(const Variable& x, const std::vector<IndexItem>& items, const Variable& y);
// A copy of X with X[items...] replaced by Y.
Variable set_subtensor(const Variable& x, const std::vector<IndexItem>& items, const Variable& y);

// ---- the ops (for passes that match them; users call the functions above) ----

// One bound of an index entry as the ops store it: absent, a constant, or the value of the op's
// input INPUT (an integer scalar).
struct IndexBound {
  enum class Kind : unsigned char { absent, constant, symbolic };
  Kind kind = Kind::absent;
  std::int64_t value = 0;  // Kind::constant
  int input = 0;           // Kind::symbolic

  static IndexBound absent() { return {}; }
  static IndexBound constant(std::int64_t v) { return {Kind::constant, v, 0}; }
  static IndexBound symbolic(int input_index) { return {Kind::symbolic, 0, input_index}; }
  bool operator==(const IndexBound&) const = default;
};

// The structure of one index entry: an integer index (START holds it) or a slice.
struct IndexSpec {
  bool is_slice = true;
  IndexBound start, stop, step;
  bool operator==(const IndexSpec&) const = default;
};

// "1:-1:2, 3, $2:" ($k: the value of input k).
std::string index_specs_str(const std::vector<IndexSpec>& specs);

// X[specs...]. Inputs: X, then the symbolic bounds (numbered from 1). A view of X.
class Subtensor final : public Op {
 public:
  explicit Subtensor(std::vector<IndexSpec> specs);
  const std::vector<IndexSpec>& specs() const { return specs_; }
  std::string name() const override { return "Subtensor"; }
  std::string str() const override;  // "Subtensor{1:-1, ::2}"
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
  std::vector<IndexSpec> specs_;
};

// A copy of X with Y added into (or, with SET, written over) X[specs...]. Inputs: X, Y, then the
// symbolic bounds (numbered from 2). Y aligns with the trailing axes of the indexed region and
// broadcasts along the axes in Y_BROADCASTABLE (those of static dim 1 in Y's type), as elementwise
// ops do: a size-1 axis that the type does not declare is not stretched at run time, so that the
// gradient with respect to Y keeps Y's shape.
class IncSubtensor final : public Op {
 public:
  IncSubtensor(std::vector<IndexSpec> specs, bool set, std::vector<bool> y_broadcastable);
  const std::vector<IndexSpec>& specs() const { return specs_; }
  bool is_set() const { return set_; }
  const std::vector<bool>& y_broadcastable() const { return y_broadcastable_; }
  std::string name() const override { return "IncSubtensor"; }
  std::string str() const override;  // "IncSubtensor{1:3}", "SetSubtensor{1:3}"
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

 private:
  std::vector<IndexSpec> specs_;
  bool set_;
  std::vector<bool> y_broadcastable_;
};

}  // namespace convgraph
