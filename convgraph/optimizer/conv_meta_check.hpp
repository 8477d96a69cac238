// The meta-optimizer's check of a winner before it is used and cached: a candidate that is fast
// but computes the wrong thing must never win. The winner's result on the timing inputs is
// compared with the reference implementation (the abstract op's direct loops) where that is
// affordable; on larger problems with the results of the other candidates that ran, and with the
// reference after all when it agrees with none of them.
#pragma once

#include <optional>
#include <string>

#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph {

// Largest problem (in FLOPs, conv_flops) whose reference result the check computes up front;
// above it, candidates are first compared with each other.
inline constexpr double kMetaReferenceMaxFlops = 2e8;

// max |actual - expected| / max |expected| (0 when both are all zeros); infinity when the shapes
// differ or ACTUAL has a non-finite value where EXPECTED has a finite one. Tensors on any device.
double relative_max_error(const Tensor& actual, const Tensor& expected);

// The largest relative_max_error two correct implementations of a convolution of DTYPE may show
// on random inputs (different summation orders; TF32 or float16 arithmetic when ALLOW_TF32 or
// float16).
double meta_tolerance(DType dtype, bool allow_tf32);

// The reference result of OP on A and B (the node's tensor inputs, any device) with SPATIAL as the
// gradients' shape input, on the host.
Tensor meta_reference_result(const AbstractConv& op, const Tensor& a, const Tensor& b,
                             const Shape& spatial);

}  // namespace convgraph
