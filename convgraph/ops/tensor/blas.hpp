// Matrix products through BLAS (float32/float64; other dtypes use a direct loop).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "convgraph/graph/op.hpp"
#include "convgraph/graph/variable.hpp"

namespace convgraph {

// numpy.dot for rank 1 and 2: vector.vector -> scalar, matrix.vector, vector.matrix,
// matrix.matrix. Inner dims must agree (ShapeError at build time when static, at run time else).
Variable dot(const Variable& a, const Variable& b);
// numpy.matmul: rank >= 1, leading (batch) dims broadcast, rank-1 operands promoted and dropped.
Variable matmul(const Variable& a, const Variable& b);

// Both functions promote their operands to a common dtype (inserting casts) and reject bool
// operands (TypeError). Batch dims broadcast like elementwise operands do: only where a dim is
// statically 1 (or missing on the left).

// Dot: numpy.dot of two operands of rank 1 or 2 and the same (non-bool) dtype.
class Dot : public Op {
 public:
  std::string name() const override { return "Dot"; }
  bool equals(const Op& other) const override;
  std::size_t hash() const override;
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  std::vector<ShapeDims> infer_shape(const Node& node,
                                     const std::vector<ShapeDims>& input_shapes) const override;
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const override;
  // dot(Ra, b) + dot(a, Rb).
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const override;
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;
  bool writes_given_outputs() const override { return true; }
};

// MatMul: a batch of matrix products, a[..., m, k] x b[..., k, n] -> [..., m, n], both operands
// of rank >= 2 and the same (non-bool) dtype (matmul() promotes rank-1 operands around it). The
// batch dims are right-aligned and broadcast; which operand broadcasts along which output batch
// axis is fixed when the graph is built (BROADCAST_A[i]: a's batch dim i, counted in the output's
// batch axes, is missing or of static size 1 while b's is not), so that a run-time dim of 1 where
// the types did not say so is a ShapeError, as for elementwise ops, and gradients stay static.
class MatMul : public Op {
 public:
  MatMul(std::vector<bool> broadcast_a, std::vector<bool> broadcast_b);
  // The op for operands of types A and B (ShapeError when their batch or inner dims disagree).
  static std::shared_ptr<const MatMul> for_types(const TensorType& a, const TensorType& b);

  const std::vector<bool>& broadcast_a() const { return broadcast_a_; }
  const std::vector<bool>& broadcast_b() const { return broadcast_b_; }

  std::string name() const override { return "MatMul"; }
  // "MatMul{batch=2}"; broadcast axes marked: "MatMul{batch=2, a broadcasts [0]}".
  std::string str() const override;
  bool equals(const Op& other) const override;
  std::size_t hash() const override;
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  std::vector<ShapeDims> infer_shape(const Node& node,
                                     const std::vector<ShapeDims>& input_shapes) const override;
  // ga = sum_to(matmul(g, b^T), a), gb = sum_to(matmul(a^T, g), b).
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const override;
  // matmul(Ra, b) + matmul(a, Rb).
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const override;
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;
  bool writes_given_outputs() const override { return true; }

 private:
  std::vector<bool> broadcast_a_, broadcast_b_;
};

}  // namespace convgraph
