// Concatenation and padding.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "convgraph/graph/variable.hpp"

namespace convgraph {

// Joins INPUTS (same dtype and rank, equal dims except along AXIS) along AXIS.
Variable concatenate(const std::vector<Variable>& inputs, int axis);

enum class PadMode { constant, edge };
// PADS[i] = (before, after) for axis i (non-negative); constant mode fills with VALUE, edge mode
// replicates the border element (the axis must then be non-empty).
Variable pad(const Variable& x, const std::vector<std::pair<std::int64_t, std::int64_t>>& pads,
             PadMode mode = PadMode::constant, double value = 0.0);

}  // namespace convgraph
