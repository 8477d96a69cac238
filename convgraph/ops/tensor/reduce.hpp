// Reductions over any set of axes. AXES empty means every axis; negative axes count from the end;
// a repeated or out-of-range axis is a ValueError.
#pragma once

#include <vector>

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

}  // namespace convgraph
