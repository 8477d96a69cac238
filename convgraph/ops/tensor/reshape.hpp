// Shape-changing views and copies: reshape, dimshuffle (transpose, add or drop broadcastable
// axes), flip.
#pragma once

#include <vector>

#include "convgraph/graph/dim.hpp"
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

}  // namespace convgraph
