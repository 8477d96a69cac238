// verify_grad: numerical checking of symbolic gradients, for users' own graphs and for tests.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "convgraph/base/error.hpp"
#include "convgraph/graph/variable.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph {

// Raised when a symbolic gradient disagrees with finite differences.
class GradientError : public ConvGraphError {
 public:
  using ConvGraphError::ConvGraphError;
};

struct VerifyGradOptions {
  std::uint64_t seed = 42;        // for the random projection
  std::optional<double> eps;      // finite-difference step; default per dtype
  std::optional<double> abs_tol;  // default per dtype
  std::optional<double> rel_tol;  // default per dtype
  std::string flags;              // compile flags for the functions it builds
};

// Builds FN on symbolic inputs of the types of POINTS, projects its output on random weights in
// [0.5, 1.5) to get a scalar, and compares the symbolic gradient of that scalar with one-sided
// finite differences taken element by element at POINTS. Fails (GradientError naming the input,
// the worst element, both values and both errors) only where the absolute and the relative error
// both exceed their tolerances at the worst element.
// Per-dtype defaults: eps 1e-7 (float64), 3e-4 (float32), 1e-1 (float16); abs_tol = rel_tol =
// 1e-4 (float64), 1e-2 (float32), 5e-2 (float16).
void verify_grad(const std::function<Variable(const std::vector<Variable>&)>& fn,
                 const std::vector<Tensor>& points, const VerifyGradOptions& options = {});

}  // namespace convgraph
