// Test support for fused kernels: random IRs with matching random tensors, the reference result
// of an IR computed by composing the unfused kernels (elemwise_kernel, cast_kernel and the Reduce
// op), and element comparisons.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "convgraph/codegen/fused_ir.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph::testing {

struct RandomFusedCase {
  codegen::FusedIR ir;
  Shape shape;                 // the iteration shape
  std::vector<Tensor> inputs;  // some of them strided views
};

// What the outputs of a random case are: all elementwise, all reduced the same way, or mixed
// (at least one elementwise output and one reduced one, each reduction with its own kind, axes and
// keepdims).
enum class RandomOutputs { elementwise, reduced, mixed };

// A random IR of a few instructions over random dtypes (float16/32/64, int8/32/64, bool), with
// broadcast inputs, casts, every ScalarOp, and outputs as OUTPUTS says, over SHAPE (or a random
// shape with odd extents when SHAPE is empty). Integer int_div/mod/pow are left out (their zero
// divisors are tested on their own). FLOATS_ONLY keeps the inputs' dtypes to float32 and float64.
RandomFusedCase random_fused_case(std::uint64_t seed, RandomOutputs outputs, Shape shape = {},
                                  bool floats_only = false);
inline RandomFusedCase random_fused_case(std::uint64_t seed, bool with_reduction,
                                         Shape shape = {}) {
  return random_fused_case(
      seed, with_reduction ? RandomOutputs::reduced : RandomOutputs::elementwise, std::move(shape));
}

// The outputs of IR on INPUTS over iteration shape SHAPE, computed with the unfused kernels.
std::vector<Tensor> reference_outputs(const codegen::FusedIR& ir, const std::vector<Tensor>& inputs,
                                      const Shape& shape);

// Empty when ACTUAL equals EXPECTED element for element (NaN equals NaN; with ULPS > 0, floats
// may differ by that many units in the last place, or by RTOL relatively); else a description of
// the first difference.
std::string compare_tensors(const Tensor& actual, const Tensor& expected, int ulps = 0,
                            double rtol = 0.0);

}  // namespace convgraph::testing
