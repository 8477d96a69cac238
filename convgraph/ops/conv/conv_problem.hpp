// The checked shapes of one convolution call: what every implementation (the reference, CorrMM,
// oneDNN, GpuCorrMM, cuDNN) needs before it computes anything, resolved by one function so that
// they all accept the same inputs and reject the others with the same messages.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_params.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph {

struct ConvProblem {
  // Full shapes of the forward convolution the call belongs to: image (B, C, spatial...), kernel
  // (M, [regions...,] C/G, k...) and output (B, M, o...).
  Shape image, kernel, output;
  // The shape of what this direction computes (output, image gradient or kernel gradient).
  Shape result;
  // Per spatial axis: the image's and the kernel's sizes, the output's, the padding before and
  // after (border modes resolved), strides and dilations.
  std::vector<std::int64_t> image_spatial, kernel_spatial, output_spatial;
  std::vector<std::int64_t> pad_before, pad_after, stride, dilation;
  std::int64_t batch = 0, channels = 0, filters = 0, groups = 1;
  std::int64_t channels_per_group() const { return channels / groups; }
  std::int64_t filters_per_group() const { return filters / groups; }
  // Whether any axis pads differently before and after.
  bool asymmetric_padding() const;
};

// Checks the shapes of a call of DIRECTION -- its two tensor inputs A and B (forward: image,
// kernel; grad_inputs: kernel, topgrad; grad_weights: image, topgrad) and its spatial argument
// (the image's or the kernel's spatial sizes for the gradients; ignored for the forward) -- and
// resolves them. Throws ShapeError naming FN, what is wrong and what was expected. The tensor
// checks (rank, dtype, device) are the caller's, before this.
ConvProblem resolve_conv_problem(const std::string& fn, ConvDirection direction,
                                 const ConvParams& params, const Shape& a, const Shape& b,
                                 const Shape& spatial);

// The op-level check of AbstractConv::perform: the imshp / kshp hints against the actual shapes
// (A, B as above; RESULT the direction's result shape).
void check_conv_hints(const std::string& fn, ConvDirection direction, const ConvParams& params,
                      const Shape& a, const Shape& b, const Shape& result);

}  // namespace convgraph
