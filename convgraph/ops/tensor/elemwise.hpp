// Elementwise operations with numpy broadcasting.
//
// Broadcasting follows numpy with one rule made static: an axis broadcasts only where its static
// dim is 1 (or where it is missing on the left). A dim that is unknown at build time and turns
// out to be 1 at run time while the other operand's is not raises ShapeError; declare such dims
// as 1 in the input's type. This keeps gradients (which sum over broadcast axes) static.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "convgraph/graph/op.hpp"
#include "convgraph/graph/variable.hpp"

namespace convgraph {

enum class ScalarOp {
  // binary arithmetic
  add, sub, mul, true_div, int_div, mod, pow, maximum, minimum,
  // comparisons (output bool)
  eq, neq, lt, le, gt, ge,
  // logic on bools
  logical_and, logical_or, logical_not,
  // unary arithmetic
  neg, abs, sign, square, exp, log, log1p, sqrt, relu, sigmoid, tanh, softplus,
  // ternary: where(cond, a, b)
  where,
};

std::string_view scalar_op_name(ScalarOp op);

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

// Converts to DTYPE (float -> int truncates toward zero; anything -> bool is != 0).
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

// The type NUMBER takes when combined with a variable of dtype LIKE (see the operators above).
DType number_dtype(double number, DType like);

}  // namespace convgraph
