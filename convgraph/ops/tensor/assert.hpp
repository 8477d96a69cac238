// Assert: passes X through unchanged after checking that every condition is true at run time.
#pragma once

#include <string>
#include <vector>

#include "convgraph/graph/variable.hpp"

namespace convgraph {

// Which exception a failing assert raises.
enum class AssertKind { assertion, shape };

// X, after checking CONDITIONS (bool scalars). A false one raises AssertionError (or ShapeError
// for AssertKind::shape) carrying MESSAGE. Conditions that are constant true are dropped; a
// constant false one raises at build time.
Variable assert_op(const Variable& x, const std::vector<Variable>& conditions,
                   const std::string& message, AssertKind kind = AssertKind::assertion);

}  // namespace convgraph
