// Activation and loss composites for classifiers and regressors, built from the elementwise ops
// and reductions (no ops of their own, so every pass and the gradient see through them). All take
// floating-point inputs.
#pragma once

#include "convgraph/graph/variable.hpp"

namespace convgraph {

// exp(x - max) / sum(exp(x - max)) along AXIS (negative counts from the end).
Variable softmax(const Variable& x, int axis = -1);
// x - max - log(sum(exp(x - max))) along AXIS: finite for any finite input, unlike log(softmax).
Variable log_softmax(const Variable& x, int axis = -1);

// Per-example cross-entropy of the softmax of LOGITS against TARGETS (one-hot or any probability
// distribution along AXIS): -sum(targets * log_softmax(logits, axis), axis). AXIS is removed from
// the result (a matrix of [batch, classes] gives a vector of [batch]).
Variable cross_entropy_with_logits(const Variable& logits, const Variable& targets, int axis = -1);
// Per-example cross-entropy of the probabilities PROBS (already normalised, e.g. a softmax output)
// against TARGETS: -sum(targets * log(probs), axis). Infinite where a target's class has
// probability 0; prefer cross_entropy_with_logits.
Variable categorical_crossentropy(const Variable& probs, const Variable& targets, int axis = -1);

// Elementwise binary cross-entropy of sigmoid(LOGITS) against TARGETS in [0, 1]:
// softplus(x) - x * t, which equals -t log(sigmoid(x)) - (1 - t) log(1 - sigmoid(x)) without
// overflowing or losing all precision for large |x|. Same shape as the broadcast operands.
Variable binary_cross_entropy_with_logits(const Variable& logits, const Variable& targets);

// The mean over all elements of (a - b)^2: a scalar.
Variable mean_squared_error(const Variable& a, const Variable& b);

}  // namespace convgraph
