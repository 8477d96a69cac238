// The GpuCorrMM family: convolutions on a CUDA device as im2col / col2im
// (convgraph's own CUDA kernels) plus cuBLAS GEMMs, in every direction, in 2-D ("GpuCorrMM") and
// 3-D ("GpuCorr3dMM"), float16 / float32 / float64.
//
// As on the CPU (ops/cpu/corrmm.hpp), a GpuCorrMM node takes the same inputs and the same
// ConvParams as the AbstractConv it replaces, filter_flip included (im2col reads the taps
// mirrored), so a lowered node computes exactly what the abstract node computed and the two can
// be compared node by node. Types, shapes, gradients and R-operators are the abstract op's.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "convgraph/ops/concrete_conv.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_implementation.hpp"

namespace convgraph {

// Inputs by direction, as AbstractConv (tensors on one CUDA device; the shape input on the host):
//   forward:      (image, kernel)
//   grad_inputs:  (kernel, topgrad, shape)
//   grad_weights: (image, topgrad, shape)
//
// ALLOW_TF32 (the flag dnn.conv.allow_tf32, read when the node is lowered): float32 GEMMs may run
// on TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32); off, they are strict FP32. float16 and
// float64 data ignore it.
class GpuCorrMM final : public ConcreteConv {
 public:
  GpuCorrMM(ConvDirection direction, ConvParams params, bool allow_tf32 = false);

  bool allow_tf32() const { return allow_tf32_; }

  // "GpuCorrMM", "GpuCorrMM_gradInputs", "GpuCorrMM_gradWeights", "GpuCorr3dMM", ...
  std::string name() const override;
  // Tensors on a CUDA device, float16 / float32 / float64.
  ConcreteConvRequirements requirements() const override;

 protected:
  // Runs on the device, on the current stream (the op's perform waits for it).
  std::shared_ptr<ConcreteConvKernelBase> make_conv_kernel(std::string name) const override;
  bool same_options(const ConcreteConv& other) const override;
  std::size_t options_hash() const override;
  std::string options_str() const override;

 private:
  bool allow_tf32_ = false;
};

// The computations on device tensors (queued on the current stream of their device), with the
// same checks and errors as the reference_conv_* functions of abstract_conv.hpp. ALLOW_TF32: as
// the op's.
Tensor gpu_corrmm_forward(const ConvParams& params, const Tensor& image, const Tensor& kernel,
                          bool allow_tf32 = false);
Tensor gpu_corrmm_grad_inputs(const ConvParams& params, const Tensor& kernel, const Tensor& topgrad,
                              const Shape& image_spatial, bool allow_tf32 = false);
Tensor gpu_corrmm_grad_weights(const ConvParams& params, const Tensor& image, const Tensor& topgrad,
                               const Shape& kernel_spatial, bool allow_tf32 = false);

// Whether a forward GpuCorrMM call with these parameters on an image of IMAGE_SHAPE and a kernel
// of KERNEL_SHAPE (full shapes, batch and filters included) runs on the direct grouped kernels
// (gpu_direct_grouped.hpp) rather than im2col + GEMMs; the gradients of the same problem take
// the same path. Direct: shared kernels, more than one group (or one image channel), at most 8
// channels per group, any number of filters per group, 2-D or 3-D, shared-memory tiles that fit
// (gpu::direct_grouped_supported; only huge dilated kernels miss), and
// gpu::GpuCorrMMTuning::direct_grouped on. False for shapes the convolution rejects.
bool gpu_corrmm_direct_grouped_applicable(const ConvParams& params, const Shape& image_shape,
                                          const Shape& kernel_shape);
// How many calls (any direction) have run on the direct grouped kernels in this process: lets
// tests observe which path a problem took.
std::int64_t gpu_corrmm_direct_grouped_calls();

// The registry row's hooks (optimizer/conv_registry.cpp): floating dtypes with both tensor inputs
// on a CUDA device, every parameter; dnn.conv.allow_tf32 governs its float32 GEMMs.
ConvImplementationHooks gpu_corrmm_conv_hooks();

}  // namespace convgraph
