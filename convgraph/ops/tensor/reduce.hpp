// Reductions over any set of axes. AXES empty means every axis; negative axes count from the end;
// a repeated or out-of-range axis is a ValueError.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "convgraph/graph/op.hpp"
#include "convgraph/graph/variable.hpp"

namespace convgraph {

enum class ReduceOp { sum, prod, max, min, mean };

// sum/prod of integers and bools accumulate in int64; mean of integers gives floatX.
Variable sum(const Variable& x, const std::vector<int>& axes = {}, bool keepdims = false);
Variable mean(const Variable& x, const std::vector<int>& axes = {}, bool keepdims = false);
Variable prod(const Variable& x, const std::vector<int>& axes = {}, bool keepdims = false);
// max/min over an empty axis is a ShapeError at run time (there is no identity).
Variable max(const Variable& x, const std::vector<int>& axes = {}, bool keepdims = false);
Variable min(const Variable& x, const std::vector<int>& axes = {}, bool keepdims = false);

// Sums G over the axes along which a value of type TARGET was broadcast to G's shape, giving
// TARGET's rank and static dims (used by gradients of broadcasting ops).
Variable sum_to(const Variable& g, const TensorType& target);

// Any reduction as a function of the op (AXES as for sum()).
Variable reduce(ReduceOp op, const Variable& x, const std::vector<int>& axes = {},
                bool keepdims = false);

std::string_view reduce_op_name(ReduceOp op);
// The dtype REDUCE_OP produces from an input of dtype INPUT (mean of integers reads floatX).
DType reduce_output_dtype(ReduceOp op, DType input);
// AXES (negative allowed, empty = all) for a tensor of rank RANK, made non-negative and sorted.
// WHAT names the caller in the ValueError raised for a repeated or out-of-range axis.
std::vector<int> normalize_axes(const std::vector<int>& axes, int rank, std::string_view what);

// Reduce{op, axes, keepdims}: one op for every reduction. AXES are normalised (non-negative,
// sorted, unique) by the functions above; make_outputs checks them against the input's rank.
// The reference implementation accumulates float32 in double, float16 in float and integers in
// int64 (wrapping on overflow, as numpy does).
class Reduce : public Op {
 public:
  Reduce(ReduceOp op, std::vector<int> axes, bool keepdims);

  ReduceOp op() const { return op_; }
  const std::vector<int>& axes() const { return axes_; }
  bool keepdims() const { return keepdims_; }

  std::string name() const override { return "Reduce"; }
  // "Reduce{sum, axes=[0, 2]}", "Reduce{max, axes=[1], keepdims}"
  std::string str() const override;
  bool equals(const Op& other) const override;
  std::size_t hash() const override;

  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  std::vector<ShapeDims> infer_shape(const Node& node,
                                     const std::vector<ShapeDims>& input_shapes) const override;
  // sum: G broadcast back; mean: that over the count; max/min: G to every element equal to the
  // result (all ties receive it, as in Theano); prod: exact with zeros (one zero gets the product
  // of the others, two or more give zero everywhere).
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const override;
  // sum/mean: the same reduction of the eval point; max/min: the mean of the eval point over the
  // elements tied for the extremum (the derivative where it exists, a symmetric choice at ties);
  // prod: the sum of the eval point times the exact per-element derivative, valid with zeros.
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const override;
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;
  bool writes_given_outputs() const override { return true; }

  // Whether input axis AXIS is reduced.
  bool reduces(int axis) const;

 private:
  ReduceOp op_;
  std::vector<int> axes_;
  bool keepdims_;
};

}  // namespace convgraph
