// Elementwise operations with numpy broadcasting.
//
// Broadcasting follows numpy with one rule made static: an axis broadcasts only where its static
// dim is 1 (or where it is missing on the left). A dim that is unknown at build time and turns
// out to be 1 at run time while the other operand's is not raises ShapeError; declare such dims
// as 1 in the input's type. This keeps gradients (which sum over broadcast axes) static.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "convgraph/graph/inplace.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/graph/variable.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph {

enum class ScalarOp {
  // binary arithmetic
  add,
  sub,
  mul,
  true_div,
  int_div,
  mod,
  pow,
  maximum,
  minimum,
  // comparisons (output bool)
  eq,
  neq,
  lt,
  le,
  gt,
  ge,
  // logic on bools
  logical_and,
  logical_or,
  logical_not,
  // unary arithmetic
  neg,
  abs,
  sign,
  square,
  exp,
  log,
  log1p,
  sqrt,
  relu,
  sigmoid,
  tanh,
  softplus,
  // ternary: where(cond, a, b)
  where,
};

std::string_view scalar_op_name(ScalarOp op);
// How many operands OP takes (1, 2 or 3).
int scalar_op_arity(ScalarOp op);
// True for the comparisons, whose output is bool whatever the operands' dtype.
bool scalar_op_is_comparison(ScalarOp op);

// One ScalarOp applied elementwise, with the broadcasting rule above.
//
// The op itself does no promotion: every operand has one dtype (for `where`, the condition is
// bool and the two branches share one dtype), and make_outputs rejects anything else with a
// TypeError. The builder functions below are where the dtype rules live: they promote the
// operands and insert Cast nodes, so a graph shows every conversion as a node of its own (the
// fusion pass folds them into the loop later). Which dtypes each ScalarOp accepts:
//   add sub mul neg abs sign square relu          numeric (integers, floats), not bool
//   true_div, exp log log1p sqrt sigmoid tanh softplus    floats only
//   int_div mod pow                                numeric, not bool
//   maximum minimum, eq neq lt le gt ge            any dtype (comparisons give bool)
//   logical_and logical_or logical_not             bool only
//   where(cond, a, b)                              cond bool, a and b any one dtype
//
// The op also records, per input, which axes were broadcastable (static dim 1) when the node was
// built, because perform() sees only tensors: a runtime 1 on an axis whose static dim was unknown
// must not broadcast (the gradient would not sum over it). An op made without that record (as
// in Elemwise(ScalarOp::add)) follows plain numpy rules at run time.
//
// In place (graph/inplace.hpp): the output may be computed into any input of the output's dtype
// and shape that is not broadcast; the in-place form prints as Elemwise{add,inplace} (into input
// 0) or Elemwise{add,inplace=1}.
class Elemwise : public Op, public InplaceCapable {
 public:
  // INPUT_BROADCASTABLE[i][axis]: whether axis AXIS of input I has static dim 1. Empty means
  // unrecorded (numpy rules at run time); otherwise make_outputs checks it against the inputs.
  explicit Elemwise(ScalarOp scalar_op, std::vector<std::vector<bool>> input_broadcastable = {});
  // The op for INPUTS, recording their broadcastable axes.
  static std::shared_ptr<const Elemwise> for_inputs(ScalarOp scalar_op,
                                                    const std::vector<Variable>& inputs);

  ScalarOp scalar_op() const { return scalar_op_; }
  const std::vector<std::vector<bool>>& input_broadcastable() const { return input_broadcastable_; }

  std::string name() const override { return "Elemwise"; }
  std::string str() const override;
  bool equals(const Op& other) const override;
  std::size_t hash() const override;
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  std::vector<ShapeDims> infer_shape(const Node& node,
                                     const std::vector<ShapeDims>& input_shapes) const override;
  // Integer and bool inputs, and every input of the piecewise-constant ops (comparisons,
  // int_div, sign, logic, the condition of where), get an undefined Variable: disconnected, a
  // zero gradient. Each gradient is summed back to its input's type.
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const override;
  // An undefined Variable where the derivative is zero (all eval points undefined, an integer or
  // bool output, or a piecewise-constant op).
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const override;
  // OUTPUTS[0] may come in allocated (the in-place form): it is written when it has the
  // output's dtype and shape and is contiguous, and replaced otherwise.
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;
  bool writes_given_outputs() const override { return true; }
  // Inputs in one blocked layout, of the result's shape (or single elements), give a result in
  // that layout (elementwise_layout in graph/variable.hpp).
  bool understands_layouts() const override { return true; }

  std::vector<std::pair<int, int>> inplace_candidates(const Node& node) const override;
  std::shared_ptr<const Op> with_inplace(int output, int input) const override;
  std::vector<std::pair<int, int>> destroy_map() const override;
  // The input whose buffer the output takes, or -1 (the ordinary form).
  int inplace_input() const { return inplace_input_; }

 private:
  ScalarOp scalar_op_;
  std::vector<std::vector<bool>> input_broadcastable_;
  int inplace_input_ = -1;
};

// Conversion to a target dtype (see cast() below for the value rules).
class Cast : public Op {
 public:
  explicit Cast(DType target) : target_(target) {}
  DType target() const { return target_; }

  std::string name() const override { return "Cast"; }
  std::string str() const override;  // "Cast{float32}"
  bool equals(const Op& other) const override;
  std::size_t hash() const override;
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  std::vector<ShapeDims> infer_shape(const Node& node,
                                     const std::vector<ShapeDims>& input_shapes) const override;
  // Float to float: the gradient cast back. Otherwise disconnected (undefined Variable).
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const override;
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const override;
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;
  bool writes_given_outputs() const override { return true; }

 private:
  DType target_;
};

// Applies SCALAR_OP to INPUTS as they are (no promotion, no casts): the dtypes must already be
// what Elemwise accepts. For passes and gradients that build elementwise nodes directly.
Variable elemwise(ScalarOp scalar_op, const std::vector<Variable>& inputs);

// ---- CPU kernels, shared by perform() and by concrete ops ----
// Computes OUTPUT (allocated, contiguous, of the broadcast shape and the op's output dtype) from
// INPUTS, which must already satisfy Elemwise's dtype rules and broadcast to OUTPUT's shape under
// numpy rules (checked by the caller). Throws ValueError, before writing anything, for integer
// division or modulo by zero and for integer pow with a negative exponent.
void elemwise_kernel(ScalarOp scalar_op, const std::vector<Tensor>& inputs, Tensor& output);
// Converts INPUT into OUTPUT (same shape, any dtypes; OUTPUT allocated) by cast()'s rules.
void cast_kernel(const Tensor& input, Tensor& output);

// ---- building blocks ----
// A rank-0 constant of DTYPE.
Variable constant(double value, DType dtype);
// A constant holding VALUE.
Variable constant(const Tensor& value);

// ---- binary (broadcasting; both operands are promoted to their common dtype, see promote()) ----
Variable add(const Variable& a, const Variable& b);
Variable sub(const Variable& a, const Variable& b);
Variable mul(const Variable& a, const Variable& b);
// Float division; integer operands give floatX.
Variable true_div(const Variable& a, const Variable& b);
// Floor division (Python //) for integers and floats.
Variable int_div(const Variable& a, const Variable& b);
// Python-style modulo (sign of the divisor).
Variable mod(const Variable& a, const Variable& b);
Variable pow(const Variable& a, const Variable& b);
Variable maximum(const Variable& a, const Variable& b);
Variable minimum(const Variable& a, const Variable& b);
Variable eq(const Variable& a, const Variable& b);
Variable neq(const Variable& a, const Variable& b);
Variable lt(const Variable& a, const Variable& b);
Variable le(const Variable& a, const Variable& b);
Variable gt(const Variable& a, const Variable& b);
Variable ge(const Variable& a, const Variable& b);
Variable logical_and(const Variable& a, const Variable& b);
Variable logical_or(const Variable& a, const Variable& b);
Variable logical_not(const Variable& a);
// COND (bool) selects A where true, B where false; all three broadcast.
Variable where(const Variable& cond, const Variable& a, const Variable& b);

// ---- unary ----
Variable neg(const Variable& x);
Variable abs(const Variable& x);
Variable sign(const Variable& x);
Variable square(const Variable& x);
// Float-only (integer input: TypeError naming the op and the dtype).
Variable exp(const Variable& x);
Variable log(const Variable& x);
Variable log1p(const Variable& x);
Variable sqrt(const Variable& x);
Variable sigmoid(const Variable& x);
Variable tanh(const Variable& x);
Variable softplus(const Variable& x);  // log(1 + exp(x)), computed stably
Variable relu(const Variable& x);      // max(x, 0)

// Converts to DTYPE (float -> int truncates toward zero; anything -> bool is != 0). Float to
// integer saturates at the integer's range and maps NaN to 0, where C++ would be undefined.
// Returns X itself when it already has DTYPE.
Variable cast(const Variable& x, DType dtype);

// ---- operators: a Variable with a Variable, or with a number (the number becomes a constant of
// the variable's dtype; an integral variable with a non-integral number gives floatX) ----
Variable operator+(const Variable& a, const Variable& b);
Variable operator-(const Variable& a, const Variable& b);
Variable operator*(const Variable& a, const Variable& b);
Variable operator/(const Variable& a, const Variable& b);
Variable operator-(const Variable& a);
Variable operator+(const Variable& a, double b);
Variable operator-(const Variable& a, double b);
Variable operator*(const Variable& a, double b);
Variable operator/(const Variable& a, double b);
Variable operator+(double a, const Variable& b);
Variable operator-(double a, const Variable& b);
Variable operator*(double a, const Variable& b);
Variable operator/(double a, const Variable& b);

// The type NUMBER takes when combined with a variable of dtype LIKE (see the operators above):
// a float LIKE itself; for an integer LIKE, LIKE when NUMBER is integral and fits in it, int64
// when it is integral and fits only there, floatX otherwise; for bool, int64 when NUMBER is
// integral, floatX otherwise (so that bool + 1 counts, as in numpy).
DType number_dtype(double number, DType like);

}  // namespace convgraph
