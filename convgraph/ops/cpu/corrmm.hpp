// The CorrMM family: convolutions on the CPU as im2col / col2im plus BLAS GEMM (Caffe's scheme), in
// every direction, in 2-D ("CorrMM") and 3-D ("Corr3dMM").
//
// Unlike the original, a CorrMM node takes the same inputs and the same ConvParams as the
// AbstractConv it replaces, filter_flip included: the flip happens inside the kernel (im2col reads
// the taps mirrored), not as a separate node in the graph. So a lowered node computes exactly what
// the abstract node computed, on identical inputs, and the two can be compared node by node.
// Types, shapes, gradients and R-operators are the abstract op's.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "convgraph/ops/concrete_conv.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_implementation.hpp"

namespace convgraph {

// Inputs by direction, as AbstractConv:
//   forward:      (image, kernel)
//   grad_inputs:  (kernel, topgrad, shape)   shape = the image's spatial sizes
//   grad_weights: (image, topgrad, shape)    shape = the kernel's spatial sizes
// float32 and float64 only: float16 is an UnsupportedError (the lowering declines it first).
class CorrMM final : public ConcreteConv {
 public:
  // EPILOGUE (forward only): applied to each block of output columns after its GEMM.
  CorrMM(ConvDirection direction, ConvParams params, ConvEpilogue epilogue = {});

  // "CorrMM", "CorrMM_gradInputs", "CorrMM_gradWeights", "Corr3dMM", ...
  std::string name() const override;
  std::string implementation() const override { return "corrmm"; }
  // float32 / float64 on the CPU.
  ConcreteConvRequirements requirements() const override;

 protected:
  std::shared_ptr<ConcreteConvKernelBase> make_conv_kernel(std::string name) const override;
};

// The computations on tensors (what perform() and the kernels run), with the same checks, the
// same results and the same errors as the reference_conv_* functions of abstract_conv.hpp.
Tensor corrmm_forward(const ConvParams& params, const Tensor& image, const Tensor& kernel);
Tensor corrmm_grad_inputs(const ConvParams& params, const Tensor& kernel, const Tensor& topgrad,
                          const Shape& image_spatial);
Tensor corrmm_grad_weights(const ConvParams& params, const Tensor& image, const Tensor& topgrad,
                           const Shape& kernel_spatial);

// The registry row's hooks (optimizer/conv_registry.cpp): float32 and float64 on the CPU, every
// parameter; every epilogue on the forward.
ConvImplementationHooks corrmm_conv_hooks();

}  // namespace convgraph
