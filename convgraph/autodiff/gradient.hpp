// Automatic differentiation: reverse mode (grad, Lop) and forward mode (Rop). Both build more
// graph; nothing is computed until the graph is compiled and called.
#pragma once

#include <vector>

#include "convgraph/graph/variable.hpp"

namespace convgraph {

enum class DisconnectedPolicy {
  raise,  // a wrt that does not influence the cost is an error (the default)
  zero,   // its gradient is zeros of its shape
};

struct GradOptions {
  DisconnectedPolicy disconnected = DisconnectedPolicy::raise;
};

// Gradient of the scalar (rank 0, floating-point) COST with respect to each of WRT.
std::vector<Variable> grad(const Variable& cost, const std::vector<Variable>& wrt,
                           const GradOptions& options = {});
Variable grad(const Variable& cost, const Variable& wrt, const GradOptions& options = {});

// Left operator (vector-Jacobian product): sum over i of EVAL_POINTS[i]^T * d OUTPUTS[i] / d WRT.
// EVAL_POINTS[i] has the type of OUTPUTS[i].
std::vector<Variable> Lop(const std::vector<Variable>& outputs, const std::vector<Variable>& wrt,
                          const std::vector<Variable>& eval_points,
                          const GradOptions& options = {});

// Right operator (Jacobian-vector product): for each output, sum over j of
// d OUTPUTS / d WRT[j] * EVAL_POINTS[j]. EVAL_POINTS[j] has the type of WRT[j]. An output that
// does not depend on any WRT gets zeros.
std::vector<Variable> Rop(const std::vector<Variable>& outputs, const std::vector<Variable>& wrt,
                          const std::vector<Variable>& eval_points);

}  // namespace convgraph
