// DebugMode: every concrete implementation is run next to the reference perform() of the op it
// replaced, on the same inputs, and the results are compared.
#pragma once

#include <memory>
#include <string>

#include "convgraph/base/config.hpp"
#include "convgraph/base/error.hpp"
#include "convgraph/graph/variable.hpp"
#include "convgraph/runtime/kernel.hpp"

namespace convgraph {

// A concrete implementation disagreed with the reference.
class DebugModeError : public ConvGraphError {
 public:
  using ConvGraphError::ConvGraphError;
};

// Tolerances used to compare: |actual - expected| <= atol + rtol * |expected| element by element.
// Defaults per dtype (float64 1e-9, float32 1e-4, float16 1e-2, both), overridden by the flags
// debugmode.rtol / debugmode.atol.
struct DebugTolerance {
  double rtol;
  double atol;
};
DebugTolerance debug_tolerance(DType dtype, const Config& config);

// Wraps KERNEL (the implementation of NODE) so that each run also runs REFERENCE's perform and
// throws DebugModeError naming the node, its debugprint and the largest error on a mismatch.
std::shared_ptr<const Kernel> debug_checked_kernel(std::shared_ptr<const Kernel> kernel,
                                                   std::shared_ptr<const Op> reference,
                                                   const Node& node, const Config& config);

}  // namespace convgraph
