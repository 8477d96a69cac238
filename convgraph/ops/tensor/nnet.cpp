#include "convgraph/ops/tensor/nnet.hpp"

#include <fmt/format.h>

#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/reduce.hpp"

namespace convgraph {
namespace {

void check_float(std::string_view what, const Variable& x) {
  if (!is_float(x.dtype())) {
    throw TypeError(fmt::format("{}: {} has type {}; expected a floating-point dtype", what,
                                x.label(), x.type().str()));
  }
}

// AXIS of X made non-negative, with the error naming WHAT.
int checked_axis(std::string_view what, const Variable& x, int axis) {
  return normalize_axes({axis}, x.ndim(), what).front();
}

}  // namespace

Variable softmax(const Variable& x, int axis) {
  check_float("softmax", x);
  const int a = checked_axis("softmax", x, axis);
  const Variable e = exp(sub(x, max(x, {a}, true)));
  return true_div(e, sum(e, {a}, true));
}

Variable log_softmax(const Variable& x, int axis) {
  check_float("log_softmax", x);
  const int a = checked_axis("log_softmax", x, axis);
  const Variable shifted = sub(x, max(x, {a}, true));
  return sub(shifted, log(sum(exp(shifted), {a}, true)));
}

Variable cross_entropy_with_logits(const Variable& logits, const Variable& targets, int axis) {
  check_float("cross_entropy_with_logits", logits);
  const int a = checked_axis("cross_entropy_with_logits", logits, axis);
  return neg(sum(mul(targets, log_softmax(logits, a)), {a}));
}

Variable categorical_crossentropy(const Variable& probs, const Variable& targets, int axis) {
  check_float("categorical_crossentropy", probs);
  const int a = checked_axis("categorical_crossentropy", probs, axis);
  return neg(sum(mul(targets, log(probs)), {a}));
}

Variable binary_cross_entropy_with_logits(const Variable& logits, const Variable& targets) {
  check_float("binary_cross_entropy_with_logits", logits);
  return sub(softplus(logits), mul(logits, targets));
}

Variable mean_squared_error(const Variable& a, const Variable& b) {
  return mean(square(sub(a, b)));
}

}  // namespace convgraph
