// The Winograd convolution family on the CPU: 3x3 filters, stride 1, any dilation (one undilated
// correlation per phase of the output: see winograd.cpp), one group, shared kernels, 2-D; and 3-D
// with 3x3 in the plane (any depth, dilated along it only: one 2-D correlation per depth tap over
// the (image, depth slice) pairs it reads, added up); float32 and float64, forward and gradients
// with respect to the inputs and the weights ("WinogradConv2d", "WinogradConv2d_gradInputs",
// "WinogradConv2d_gradWeights", "WinogradConv3d..."), by minimal filtering F(4x4, 3x3)
// (winograd_kernels.hpp): 36 GEMMs on transformed tiles instead of 144 multiply-adds per output
// tile and channel pair, 4x fewer than a direct or im2col convolution. Any padding (valid, full,
// half, explicit, asymmetric), any image size (partial edge tiles), both flips, any batch.
//
// Like CorrMM, a WinogradConv node takes the same inputs and ConvParams as the AbstractConv it
// replaces; types, shapes, gradients and R-operators are the abstract op's.
//
// Non-finite values: a tile mixes every input of its 6x6 patch into each of its 16 outputs, so an
// Inf or NaN (in the data, or from an overflow in the transforms) would spread over whole tiles
// and through the padding. A call whose result has any non-finite element is computed again by
// CorrMM's path, which agrees with the reference element by element (docs/convolution.md): on
// finite data this costs nothing but a check folded into the output transform (for the weight
// gradient, into the filters' inverse transform).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "convgraph/ops/concrete_conv.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_implementation.hpp"

namespace convgraph {

// Inputs by direction, as AbstractConv:
//   forward:      (image, kernel)
//   grad_inputs:  (kernel, topgrad, shape)   shape = the image's spatial sizes
//   grad_weights: (image, topgrad, shape)    shape = the kernel's spatial sizes ((D,) 3, 3)
// float32 and float64 on the CPU. Parameters or shapes it does not take (see
// winograd_declines) are an UnsupportedError when the node is built or run.
class WinogradConv final : public ConcreteConv {
 public:
  // UnsupportedError for a direction or parameters it does not take.
  WinogradConv(ConvDirection direction, ConvParams params);

  // "WinogradConv2d", "WinogradConv2d_gradInputs", "WinogradConv2d_gradWeights".
  std::string name() const override;
  ConcreteConvRequirements requirements() const override;

 protected:
  std::shared_ptr<ConcreteConvKernelBase> make_conv_kernel(std::string name) const override;
};

// Why the implementation does not take a convolution of DIRECTION with PARAMS (std::nullopt when
// it does, as far as the parameters tell): a sentence naming the parameter at fault.
std::optional<std::string> winograd_declines(ConvDirection direction, const ConvParams& params);

// The computations on tensors, with the reference's checks, results and errors (plus
// UnsupportedError for what the implementation does not take: see above).
Tensor winograd_conv_forward(const ConvParams& params, const Tensor& image, const Tensor& kernel);
Tensor winograd_conv_grad_inputs(const ConvParams& params, const Tensor& kernel,
                                 const Tensor& topgrad, const Shape& image_spatial);
Tensor winograd_conv_grad_weights(const ConvParams& params, const Tensor& image,
                                  const Tensor& topgrad, const Shape& kernel_spatial);

// How many calls found a non-finite element in their result and were computed again by CorrMM
// (for tests).
std::uint64_t winograd_recomputed_calls();

// The registry row's hooks (optimizer/conv_registry.cpp): float32 and float64 on the CPU, 3x3
// kernels whose size is known at compile time, stride 1, any dilation, one group, shared kernels.
// Its prefers hook keeps the default lowering to the problems where it measured faster than
// oneDNN (see docs/convolution.md).
ConvImplementationHooks winograd_conv_hooks();

}  // namespace convgraph
