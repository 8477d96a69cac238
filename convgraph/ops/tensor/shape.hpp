// Shapes as graph values: the Shape / Shape_i / MakeVector ops, Dim arithmetic (constants fold,
// symbolic dims build int64 scalar graph nodes, unknown stays unknown), and symbolic shape
// inference over a graph.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "convgraph/graph/dim.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/graph/variable.hpp"

namespace convgraph {

// The shape of X as an int64 vector (folded to a constant when every dim is static).
Variable shape(const Variable& x);
// Dim AXIS of X as an int64 scalar (negative axes count from the end; a constant if static).
Variable shape_i(const Variable& x, int axis);
// An int64 vector from int64 scalars (or Dims).
Variable make_vector(const std::vector<Variable>& scalars);
Variable shape_vector(const ShapeDims& dims);

// Dim arithmetic. Constants fold; unknown is contagious; otherwise graph nodes are built.
Dim operator+(const Dim& a, const Dim& b);
Dim operator-(const Dim& a, const Dim& b);
Dim operator*(const Dim& a, const Dim& b);
Dim floor_div(const Dim& a, const Dim& b);  // Python //: rounds toward minus infinity
Dim ceil_div(const Dim& a, const Dim& b);
Dim dim_max(const Dim& a, const Dim& b);
Dim dim_min(const Dim& a, const Dim& b);
// Whether A and B are certainly equal: equal constants, the same variable, or Shape_i of the same
// axis of the same tensor. False means "not known to be equal".
bool same_dim(const Dim& a, const Dim& b);
// The scalar int64 variable of D (a constant for constant dims; throws ValueError if unknown).
Variable dim_variable(const Dim& d);

// The dims of X without walking its graph: static dims as constants, Shape_i{axis}(X) elsewhere.
// Cheap (no graph walk, at most one node per unknown axis), for gradients and *_like builders.
ShapeDims shape_dims(const Variable& x);

// The symbolic shape of X: constants where known, expressions in the graph's inputs' Shape_i
// otherwise, computed by walking X's graph with each op's infer_shape.
ShapeDims symbolic_shape(const Variable& x);
// A readable form of a shape: "(8, 64, (Shape_i{2}('x') - 2), ?)".
std::string shape_expression(const ShapeDims& dims);
// The expression of one dim, as shape_expression prints it: "7", "?", "(Shape_i{2}('x') - 2)".
std::string dim_expression(const Dim& dim);

// ---- the ops (for passes that match them; users call the functions above) ----

// X -> its shape as an int64 vector of length rank(X). Named ShapeOp because `Shape` is the
// runtime shape type.
class ShapeOp final : public Op {
 public:
  std::string name() const override { return "Shape"; }
  bool equals(const Op& other) const override;
  std::size_t hash() const override;
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const override;
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const override;
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;
};

// X -> dim AXIS of X as an int64 scalar.
class ShapeI final : public Op {
 public:
  explicit ShapeI(int axis);  // AXIS >= 0
  int axis() const { return axis_; }
  std::string name() const override { return "Shape_i"; }
  std::string str() const override;
  bool equals(const Op& other) const override;
  std::size_t hash() const override;
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const override;
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const override;
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;

 private:
  int axis_;
};

// Integer scalars -> an int64 vector holding them.
class MakeVector final : public Op {
 public:
  std::string name() const override { return "MakeVector"; }
  bool equals(const Op& other) const override;
  std::size_t hash() const override;
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const override;
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const override;
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;
};

}  // namespace convgraph
