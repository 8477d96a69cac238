// The checked shapes of one convolution call: what every implementation (the reference, CorrMM,
// oneDNN, GpuCorrMM, cuDNN) needs before it computes anything, resolved by one function so that
// they all accept the same inputs and reject the others with the same messages.
#pragma once

#include <cstddef>
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

// Copies PROBLEM into a geometry laid out in 3-D with the spatial axes right-aligned (2-D problems
// get a depth of 1), as the im2col geometries of CorrMM and GpuCorrMM are: GEOMETRY has the
// integer fields batch, channels, filters, groups, channels_per_group, filters_per_group and the
// three-element arrays image, kernel, output, stride, dilation, pad_before, pad_after.
template <typename Geometry>
void fill_3d_geometry(const ConvProblem& problem, Geometry& geometry) {
  geometry.batch = problem.batch;
  geometry.channels = problem.channels;
  geometry.filters = problem.filters;
  geometry.groups = problem.groups;
  geometry.channels_per_group = problem.channels_per_group();
  geometry.filters_per_group = problem.filters_per_group();
  const std::size_t n = problem.stride.size();
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t j = 3 - n + i;
    geometry.image[j] = problem.image_spatial[i];
    geometry.kernel[j] = problem.kernel_spatial[i];
    geometry.output[j] = problem.output_spatial[i];
    geometry.stride[j] = problem.stride[i];
    geometry.dilation[j] = problem.dilation[i];
    geometry.pad_before[j] = problem.pad_before[i];
    geometry.pad_after[j] = problem.pad_after[i];
  }
}

// The op-level check of AbstractConv::perform: the imshp / kshp hints against the actual shapes
// (A, B as above; RESULT the direction's result shape).
void check_conv_hints(const std::string& fn, ConvDirection direction, const ConvParams& params,
                      const Shape& a, const Shape& b, const Shape& result);

}  // namespace convgraph
