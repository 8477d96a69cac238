// The user-facing convolution functions (conv2d, conv3d and the gradients of conv2d), with the
// original's parameters and defaults. Use designated initializers for the options:
//   auto y = conv2d(x, w, {.border_mode = "half", .subsample = {2, 2}});
#pragma once

#include <vector>

#include "convgraph/graph/variable.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"

namespace convgraph {

struct ConvOptions {
  StaticShape input_shape;   // hint: the image shape (unknown entries allowed), or empty
  StaticShape filter_shape;  // hint: the filter shape, or empty
  BorderMode border_mode = "valid";
  std::vector<std::int64_t> subsample;        // empty: all ones
  bool filter_flip = true;                    // true: convolution; false: cross-correlation
  std::vector<std::int64_t> filter_dilation;  // empty: all ones
  std::int64_t num_groups = 1;
  bool unshared = false;  // 2-D only
};

// input (B, C, H, W), filters (M, C/G, kh, kw) (unshared: (M, oh, ow, C/G, kh, kw)).
Variable conv2d(const Variable& input, const Variable& filters, const ConvOptions& options = {});
// input (B, C, D, H, W), filters (M, C/G, kd, kh, kw).
Variable conv3d(const Variable& input, const Variable& filters, const ConvOptions& options = {});

// The same followed by a per-channel BIAS, a vector of M values (cast to the input's dtype):
// conv2d(input, filters, options) + BIAS broadcast over the batch and spatial axes. The
// conv_epilogue pass folds the add (and a ReLU or residual add after it) into the convolution
// where its implementation can apply it. A bias that is not a vector is a TypeError; one whose
// static length differs from the filters' M a ShapeError.
Variable conv2d(const Variable& input, const Variable& filters, const Variable& bias,
                const ConvOptions& options = {});
Variable conv3d(const Variable& input, const Variable& filters, const Variable& bias,
                const ConvOptions& options = {});

// The gradient of conv2d with respect to its input. INPUT_SHAPE (4 entries) gives the image
// shape: entries 0-1 constant or unknown, entries 2-3 constant or symbolic (required: with
// strides several image sizes give the same output size). OPTIONS.input_shape is ignored.
Variable conv2d_grad_wrt_inputs(const Variable& output_grad, const Variable& filters,
                                const ShapeDims& input_shape, const ConvOptions& options = {});
Variable conv3d_grad_wrt_inputs(const Variable& output_grad, const Variable& filters,
                                const ShapeDims& input_shape, const ConvOptions& options = {});
// The gradient of conv2d with respect to its filters. FILTER_SHAPE (4 entries, 6 when unshared):
// leading entries constant or unknown, the spatial ones constant or symbolic.
// OPTIONS.filter_shape is ignored.
Variable conv2d_grad_wrt_weights(const Variable& input, const Variable& output_grad,
                                 const ShapeDims& filter_shape, const ConvOptions& options = {});
Variable conv3d_grad_wrt_weights(const Variable& input, const Variable& output_grad,
                                 const ShapeDims& filter_shape, const ConvOptions& options = {});

}  // namespace convgraph
