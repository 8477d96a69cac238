// Assert: passes X through unchanged after checking that every condition is true at run time;
// AssertSameShape: likewise after checking that X has the shape of another variable.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "convgraph/graph/op.hpp"
#include "convgraph/graph/variable.hpp"

namespace convgraph {

// Which exception a failing assert raises.
enum class AssertKind { assertion, shape };

// X, after checking CONDITIONS (bool scalars). A false one raises AssertionError (or ShapeError
// for AssertKind::shape) carrying MESSAGE. Conditions that are constant true are dropped; a
// constant false one raises at build time.
Variable assert_op(const Variable& x, const std::vector<Variable>& conditions,
                   const std::string& message, AssertKind kind = AssertKind::assertion);

// Assert{message, kind}: inputs X and one or more bool scalar conditions; the output is X itself
// (a view: perform hands back the input tensor, not a copy). Never constant-folded: dropping
// checks is assert_op's business (constant conditions) or a pass's (conditions proven true).
class Assert : public Op {
 public:
  Assert(std::string message, AssertKind kind);

  const std::string& message() const { return message_; }
  AssertKind kind() const { return kind_; }

  std::string name() const override { return "Assert"; }
  // "Assert{shape: 'conv input channels'}"
  std::string str() const override;
  bool equals(const Op& other) const override;
  std::size_t hash() const override;
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  std::vector<ShapeDims> infer_shape(const Node& node,
                                     const std::vector<ShapeDims>& input_shapes) const override;
  // The gradient passes to X unchanged; the conditions are disconnected.
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const override;
  // X's eval point, behind the same checks.
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const override;
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;
  std::vector<std::pair<int, int>> view_map() const override { return {{0, 0}}; }
  bool foldable() const override { return false; }

  // Throws the exception of this assert's kind carrying its message.
  [[noreturn]] void fail(const std::string& detail) const;

 private:
  std::string message_;
  AssertKind kind_;
};

// X, after checking at run time that it has the shape of LIKE; a mismatch raises ShapeError
// carrying MESSAGE and both shapes. Static dims known on both sides are checked now (ShapeError);
// when every dim is, X itself is returned. Dtypes may differ.
Variable assert_same_shape(const Variable& x, const Variable& like, const std::string& message);

// AssertSameShape: inputs X and LIKE, of equal rank; the output is X itself (a view).
// Only LIKE's shape is read. Never constant-folded.
class AssertSameShape : public Op {
 public:
  explicit AssertSameShape(std::string message);

  const std::string& message() const { return message_; }

  // The message is left out of str(): the run-time error carries it, after the node's label.
  std::string name() const override { return "AssertSameShape"; }
  bool equals(const Op& other) const override;
  std::size_t hash() const override;
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  std::vector<ShapeDims> infer_shape(const Node& node,
                                     const std::vector<ShapeDims>& input_shapes) const override;
  // The gradient passes to X unchanged; LIKE is disconnected.
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const override;
  // X's eval point, behind the same check.
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const override;
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;
  std::vector<std::pair<int, int>> view_map() const override { return {{0, 0}}; }
  bool foldable() const override { return false; }

 private:
  std::string message_;
};

}  // namespace convgraph
