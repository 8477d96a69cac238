// Convolution functions composed from the abstract ops: transposed, separable
// and causal convolutions, bilinear kernels and bilinear upsampling. Each builds graph only; the
// gradients and R-operators come from the ops it is made of.
//
// Options are plain structs with the original's defaults, for designated initializers:
//   auto up = bilinear_upsampling(x, {.ratio = 2});
//   auto y = causal_conv1d(x, w, {4, 3, 5}, {.filter_dilation = 2});
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "convgraph/graph/dim.hpp"
#include "convgraph/graph/variable.hpp"
#include "convgraph/ops/conv/conv_params.hpp"

namespace convgraph {

// ---- conv2d_transpose ----

struct ConvTransposeOptions {
  StaticShape filter_shape;  // hint: (in channels of the transpose, out channels / G, kh, kw)
  BorderMode border_mode = "valid";          // the padding of the convolution it transposes
  std::vector<std::int64_t> input_dilation;  // empty: (1, 1); the stride of that convolution
  bool filter_flip = true;
  std::vector<std::int64_t> filter_dilation;  // empty: (1, 1)
  std::int64_t num_groups = 1;
  bool unshared = false;
};

// The transpose (adjoint) of conv2d: conv2d_grad_wrt_inputs with OUTPUT_GRAD = INPUT and the
// stride given as INPUT_DILATION. OUTPUT_SHAPE (4 entries) is the shape of the result, needed
// because with strides several sizes map to one; its spatial entries may be symbolic.
Variable conv2d_transpose(const Variable& input, const Variable& filters,
                          const ShapeDims& output_shape, const ConvTransposeOptions& options = {});

// ---- separable convolutions ----

struct SeparableConvOptions {
  StaticShape input_shape;             // hint for the input
  StaticShape depthwise_filter_shape;  // hint: (C * multiplier, 1, k...)
  StaticShape pointwise_filter_shape;  // hint: (M, C * multiplier, 1...)
  // Border, stride and dilation apply to the depthwise step only; the pointwise step is always a
  // valid, unit-stride convolution.
  BorderMode border_mode = "valid";
  std::vector<std::int64_t> subsample;  // empty: all ones
  bool filter_flip = true;
  std::vector<std::int64_t> filter_dilation;  // empty: all ones
};

// A depthwise convolution (NUM_CHANNELS groups: output channel k reads input channel
// k / multiplier) followed by a pointwise one. INPUT (B, C, H, W) with C = NUM_CHANNELS,
// DEPTHWISE_FILTERS (C * multiplier, 1, kh, kw), POINTWISE_FILTERS (M, C * multiplier, 1, 1).
Variable separable_conv2d(const Variable& input, const Variable& depthwise_filters,
                          const Variable& pointwise_filters, std::int64_t num_channels,
                          const SeparableConvOptions& options = {});
// The same in 3-D: INPUT (B, C, D, H, W), filters (C * multiplier, 1, kd, kh, kw) and
// (M, C * multiplier, 1, 1, 1).
Variable separable_conv3d(const Variable& input, const Variable& depthwise_filters,
                          const Variable& pointwise_filters, std::int64_t num_channels,
                          const SeparableConvOptions& options = {});

// ---- causal_conv1d ----

struct CausalConvOptions {
  StaticShape input_shape;  // hint: (B, C, L), or empty
  std::int64_t subsample = 1;
  bool filter_flip = true;
  std::int64_t filter_dilation = 1;
  std::int64_t num_groups = 1;
  // A separate kernel per output step. The original accepted the flag but could never build the
  // graph (it requires 3-D filters); here unshared filters are 4-D (M, L_out, C / G, k) and
  // FILTER_SHAPE has those 4 entries.
  bool unshared = false;
};

// A 1-D convolution whose output at step t depends on the input up to and including step t*s:
//   out[b, m, t] = sum_c sum_j W[m, c, j] * x[b, c, t*s - j*d]   (zero for negative time)
// (with filter_flip; without it, W[m, c, k-1-j]). INPUT (B, C, L), FILTERS (M, C / G, k);
// the output is (B, M, (L - 1) / s + 1). FILTER_SHAPE (3 entries) is required; its kernel length
// sets the left padding and may be unknown only when the filters' type knows it.
Variable causal_conv1d(const Variable& input, const Variable& filters,
                       const StaticShape& filter_shape, const CausalConvOptions& options = {});

// ---- bilinear kernels ----

// [1, 2, ..., r, ..., 2, 1] (length 2r - 1) in floatX, divided by r when NORMALIZE. A constant
// when RATIO is a constant; a symbolic RATIO (an int64 scalar Dim) builds an arange graph.
// RATIO must be at least 1 (ValueError), and not unknown.
Variable bilinear_kernel_1D(const Dim& ratio, bool normalize = true);
// The outer product of the 1-D kernels, shape (2 r_rows - 1, 2 r_cols - 1), divided by
// r_rows * r_cols when NORMALIZE. RATIO: one ratio for both axes, or (rows, cols).
Variable bilinear_kernel_2D(const Dim& ratio, bool normalize = true);
Variable bilinear_kernel_2D(const std::pair<Dim, Dim>& ratio, bool normalize = true);

// ---- bilinear upsampling ----

// A fractional ratio p/q per axis, reduced by the gcd when used: FracRatio(3, 2) for both axes,
// FracRatio({3, 2}, {5, 4}) for rows 3/2 and columns 5/4.
struct FracRatio {
  std::pair<std::int64_t, std::int64_t> rows{1, 1};
  std::pair<std::int64_t, std::int64_t> cols{1, 1};

  FracRatio() = default;
  FracRatio(std::int64_t numerator, std::int64_t denominator)
      : rows{numerator, denominator}, cols{numerator, denominator} {}
  FracRatio(std::pair<std::int64_t, std::int64_t> rows_ratio,
            std::pair<std::int64_t, std::int64_t> cols_ratio)
      : rows(rows_ratio), cols(cols_ratio) {}
};

struct BilinearUpsamplingOptions {
  // Exactly one of RATIO (an integer factor for both axes) and FRAC_RATIO.
  std::optional<std::int64_t> ratio;
  std::optional<FracRatio> frac_ratio;
  // Hints for the internal (B * C, 1, H, W) reshape; both are needed for the hint to be used.
  std::optional<std::int64_t> batch_size;
  std::optional<std::int64_t> num_input_channels;
  // Two 1-D passes (rows then columns) instead of one 2-D kernel: same values. Fractional
  // ratios need false.
  bool use_1D_kernel = true;
};

// Upsamples INPUT (B, C, H, W), a float tensor, to (B, C, H * r, W * r) by linear interpolation
// with the border replicated: out[.., h, w] interpolates input coordinates ((h - (r-1)/2) / r,
// (w - (r-1)/2) / r) (integer division), clamped to the image. The result has INPUT's dtype (the
// original computed in floatX).
Variable bilinear_upsampling(const Variable& input, const BilinearUpsamplingOptions& options);
// Upsamples INPUT (B, C, H, W) by p/q per axis to (B, C, (p_r H - 1) / q_r + 1,
// (p_c W - 1) / q_c + 1), again by clamped linear interpolation.
Variable frac_bilinear_upsampling(const Variable& input, const FracRatio& frac_ratio);

}  // namespace convgraph
