#include "convgraph/ops/conv/composites.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <numeric>
#include <string>

#include "convgraph/base/config.hpp"
#include "convgraph/base/error.hpp"
#include "convgraph/ops/conv/conv.hpp"
#include "convgraph/ops/tensor/alloc.hpp"
#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/join.hpp"
#include "convgraph/ops/tensor/reshape.hpp"
#include "convgraph/ops/tensor/shape.hpp"
#include "convgraph/ops/tensor/subtensor.hpp"

namespace convgraph {
namespace {

using Pads = std::vector<std::pair<std::int64_t, std::int64_t>>;

DType floatx() {
  return parse_dtype_or_throw(global_config().get("floatX"), "floatX");
}

void check_rank(const char* function, const char* what, const Variable& x, int rank,
                const char* layout) {
  if (x.ndim() != rank) {
    throw TypeError(fmt::format("{}: {} ({}) has type {} (rank {}); expected a {}-D tensor {}",
                                function, what, x.label(), x.type().str(), x.ndim(), rank, layout));
  }
}

void check_float(const char* function, const char* what, const Variable& x) {
  if (!is_float(x.dtype())) {
    throw TypeError(fmt::format("{}: {} ({}) has dtype {}; expected a floating-point tensor",
                                function, what, x.label(), dtype_name(x.dtype())));
  }
}

// The static size of axis AXIS as the hint or the type knows it (the hint wins, as in the ops).
StaticDim known_dim(const Variable& x, const StaticShape& hint, int axis) {
  if (!hint.empty() && static_cast<std::size_t>(axis) < hint.size() &&
      hint[static_cast<std::size_t>(axis)]) {
    return hint[static_cast<std::size_t>(axis)];
  }
  return x.type().dim(axis);
}

ShapeDims dims_of_static(const StaticShape& shape) {
  ShapeDims out;
  for (const auto& d : shape) out.push_back(Dim::from_static(d));
  return out;
}

// A constant of DTYPE holding VALUES (row-major) with SHAPE.
Variable constant_of(const std::vector<double>& values, const Shape& shape, DType dtype) {
  return make_constant(Tensor::from_vector<double>(values, shape).cast(dtype));
}

std::vector<double> bilinear_1d_values(std::int64_t ratio, bool normalize) {
  std::vector<double> v;
  for (std::int64_t i = 1; i <= ratio; ++i) v.push_back(static_cast<double>(i));
  for (std::int64_t i = ratio - 1; i >= 1; --i) v.push_back(static_cast<double>(i));
  if (normalize) {
    for (double& x : v) x /= static_cast<double>(ratio);
  }
  return v;
}

std::vector<double> outer(const std::vector<double>& rows, const std::vector<double>& cols) {
  std::vector<double> out;
  out.reserve(rows.size() * cols.size());
  for (double r : rows) {
    for (double c : cols) out.push_back(r * c);
  }
  return out;
}

std::int64_t checked_ratio(const char* function, const char* what, const Dim& ratio) {
  if (ratio.is_unknown()) {
    throw ValueError(
        fmt::format("{}: {} is unknown; expected a positive integer or an int64 "
                    "scalar variable",
                    function, what));
  }
  if (ratio.is_constant() && ratio.value() < 1) {
    throw ValueError(
        fmt::format("{}: {} is {}; expected a positive integer", function, what, ratio.value()));
  }
  return ratio.is_constant() ? ratio.value() : 0;
}

// X zero-padded along AXIS by BEFORE and AFTER elements, which may be symbolic.
Variable zero_pad_axis(const Variable& x, int axis, const Dim& before, const Dim& after) {
  if (before.is_constant() && after.is_constant()) {
    Pads pads(static_cast<std::size_t>(x.ndim()), {0, 0});
    pads[static_cast<std::size_t>(axis)] = {before.value(), after.value()};
    return pad(x, pads);
  }
  ShapeDims shape = shape_dims(x);
  ShapeDims before_shape = shape, after_shape = shape;
  before_shape[static_cast<std::size_t>(axis)] = before;
  after_shape[static_cast<std::size_t>(axis)] = after;
  return concatenate({zeros(before_shape, x.dtype()), x, zeros(after_shape, x.dtype())}, axis);
}

// (B, C, H, W) -> (B * C, 1, H + 2, W + 2) with the border replicated: the interpolation then
// never reaches outside the image.
Variable replicated_channels(const Variable& input) {
  const ShapeDims in = shape_dims(input);
  const Variable flat = reshape(input, ShapeDims{Dim(-1), Dim(1), in[2], in[3]});
  return pad(flat, Pads{{0, 0}, {0, 0}, {1, 1}, {1, 1}}, PadMode::edge);
}

void check_upsampling_input(const char* function, const Variable& input) {
  check_rank(function, "input", input, 4, "(batch, channels, rows, columns)");
  check_float(function, "input", input);
}

// The (p / g, q / g) of a ratio p/q given for AXIS, after checking both are positive.
std::pair<std::int64_t, std::int64_t> reduced(const std::pair<std::int64_t, std::int64_t>& r,
                                              const char* axis) {
  if (r.first < 1 || r.second < 1) {
    throw ValueError(
        fmt::format("frac_bilinear_upsampling: the {} ratio is {}/{}; expected a "
                    "positive numerator and denominator",
                    axis, r.first, r.second));
  }
  const std::int64_t g = std::gcd(r.first, r.second);
  return {r.first / g, r.second / g};
}

Variable separable_conv(int convdim, const Variable& input, const Variable& depthwise_filters,
                        const Variable& pointwise_filters, std::int64_t num_channels,
                        const SeparableConvOptions& options) {
  const char* function = convdim == 2 ? "separable_conv2d" : "separable_conv3d";
  const char* image_layout =
      convdim == 2 ? "(batch, channels, rows, columns)" : "(batch, channels, depth, rows, columns)";
  const int rank = 2 + convdim;
  check_rank(function, "input", input, rank, image_layout);
  check_rank(function, "depthwise_filters", depthwise_filters, rank,
             "(channels * multiplier, 1, kernel...)");
  check_rank(function, "pointwise_filters", pointwise_filters, rank,
             "(output channels, channels * multiplier, 1...)");
  if (num_channels < 1) {
    throw ValueError(
        fmt::format("{}: num_channels is {}; expected a positive number (the input "
                    "channels, one depthwise group each)",
                    function, num_channels));
  }
  if (const StaticDim c = known_dim(input, options.input_shape, 1); c && *c != num_channels) {
    throw ShapeError(
        fmt::format("{}: the input has {} channels but num_channels is {}; they "
                    "must be equal",
                    function, *c, num_channels));
  }
  const StaticDim dw_out = known_dim(depthwise_filters, options.depthwise_filter_shape, 0);
  if (dw_out && *dw_out % num_channels != 0) {
    throw ShapeError(
        fmt::format("{}: depthwise_filters has {} output channels, not a multiple "
                    "of num_channels ({}); expected (channels * multiplier, 1, "
                    "kernel...)",
                    function, *dw_out, num_channels));
  }
  if (const StaticDim dw_in = known_dim(depthwise_filters, options.depthwise_filter_shape, 1);
      dw_in && *dw_in != 1) {
    throw ShapeError(
        fmt::format("{}: depthwise_filters has {} input channels per filter; a "
                    "depthwise filter reads one channel, so axis 1 must be 1",
                    function, *dw_in));
  }
  const StaticDim pw_in = known_dim(pointwise_filters, options.pointwise_filter_shape, 1);
  if (dw_out && pw_in && *dw_out != *pw_in) {
    throw ShapeError(
        fmt::format("{}: pointwise_filters reads {} channels but the depthwise step "
                    "makes {}",
                    function, *pw_in, *dw_out));
  }

  const ConvOptions depthwise_options{.input_shape = options.input_shape,
                                      .filter_shape = options.depthwise_filter_shape,
                                      .border_mode = options.border_mode,
                                      .subsample = options.subsample,
                                      .filter_flip = options.filter_flip,
                                      .filter_dilation = options.filter_dilation,
                                      .num_groups = num_channels};
  const Variable depthwise = convdim == 2 ? conv2d(input, depthwise_filters, depthwise_options)
                                          : conv3d(input, depthwise_filters, depthwise_options);

  // The depthwise output shape is a hint for the pointwise step only when both shapes were
  // given, as in the original.
  StaticShape depthwise_shape;
  if (!options.input_shape.empty() && !options.depthwise_filter_shape.empty()) {
    const ConvParams params =
        make_conv_params(convdim, options.border_mode, options.subsample, options.filter_flip,
                         options.filter_dilation, num_channels, false, options.input_shape,
                         options.depthwise_filter_shape);
    depthwise_shape = to_static(get_conv_output_shape(
        dims_of_static(options.input_shape), dims_of_static(options.depthwise_filter_shape),
        params.border, params.subsample, params.dilation));
  }
  const ConvOptions pointwise_options{.input_shape = depthwise_shape,
                                      .filter_shape = options.pointwise_filter_shape,
                                      .filter_flip = options.filter_flip};
  return convdim == 2 ? conv2d(depthwise, pointwise_filters, pointwise_options)
                      : conv3d(depthwise, pointwise_filters, pointwise_options);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

Variable conv2d_transpose(const Variable& input, const Variable& filters,
                          const ShapeDims& output_shape, const ConvTransposeOptions& options) {
  // The stride is checked here so that the message names input_dilation, the parameter the user
  // gave, rather than the subsample of the op it becomes.
  if (!options.input_dilation.empty() && options.input_dilation.size() != 2) {
    throw ValueError(
        fmt::format("conv2d_transpose: input_dilation ({}) has {} elements; "
                    "expected 2 (rows, columns)",
                    fmt::join(options.input_dilation, ", "), options.input_dilation.size()));
  }
  for (const std::int64_t d : options.input_dilation) {
    if (d < 1) {
      throw ValueError(
          fmt::format("conv2d_transpose: input_dilation ({}) has an entry below 1; "
                      "expected positive integers",
                      fmt::join(options.input_dilation, ", ")));
    }
  }
  return conv2d_grad_wrt_inputs(input, filters, output_shape,
                                ConvOptions{.filter_shape = options.filter_shape,
                                            .border_mode = options.border_mode,
                                            .subsample = options.input_dilation,
                                            .filter_flip = options.filter_flip,
                                            .filter_dilation = options.filter_dilation,
                                            .num_groups = options.num_groups,
                                            .unshared = options.unshared});
}

Variable separable_conv2d(const Variable& input, const Variable& depthwise_filters,
                          const Variable& pointwise_filters, std::int64_t num_channels,
                          const SeparableConvOptions& options) {
  return separable_conv(2, input, depthwise_filters, pointwise_filters, num_channels, options);
}

Variable separable_conv3d(const Variable& input, const Variable& depthwise_filters,
                          const Variable& pointwise_filters, std::int64_t num_channels,
                          const SeparableConvOptions& options) {
  return separable_conv(3, input, depthwise_filters, pointwise_filters, num_channels, options);
}

// ---------------------------------------------------------------------------------------------

Variable causal_conv1d(const Variable& input, const Variable& filters,
                       const StaticShape& filter_shape, const CausalConvOptions& options) {
  constexpr const char* kFunction = "causal_conv1d";
  check_rank(kFunction, "input", input, 3, "(batch, channels, length)");
  const int filter_rank = options.unshared ? 4 : 3;
  check_rank(kFunction, "filters", filters, filter_rank,
             options.unshared ? "(filters, output length, channels / groups, kernel length) for "
                                "an unshared convolution"
                              : "(filters, channels / groups, kernel length)");
  if (filter_shape.size() != static_cast<std::size_t>(filter_rank)) {
    throw ValueError(
        fmt::format("{}: filter_shape {} has {} entries; it is required, with {} "
                    "entries (the filters' shape)",
                    kFunction, static_shape_str(filter_shape), filter_shape.size(), filter_rank));
  }
  if (!options.input_shape.empty() && options.input_shape.size() != 3) {
    throw ValueError(
        fmt::format("{}: input_shape {} has {} entries; expected 3 (batch, "
                    "channels, length) or none",
                    kFunction, static_shape_str(options.input_shape), options.input_shape.size()));
  }
  if (options.subsample < 1) {
    throw ValueError(fmt::format("{}: subsample is {}; expected a positive integer", kFunction,
                                 options.subsample));
  }
  if (options.filter_dilation < 1) {
    throw ValueError(fmt::format("{}: filter_dilation is {}; expected a positive integer",
                                 kFunction, options.filter_dilation));
  }
  const StaticDim hinted = filter_shape.back();
  const StaticDim typed = filters.type().dim(-1);
  if (hinted && typed && *hinted != *typed) {
    throw ShapeError(fmt::format(
        "{}: filter_shape {} gives kernel length {} but the filters ({}) "
        "have type {}",
        kFunction, static_shape_str(filter_shape), *hinted, filters.label(), filters.type().str()));
  }
  const StaticDim length = hinted ? hinted : typed;
  if (!length) {
    throw ValueError(
        fmt::format("{}: the kernel length (filter_shape[{}]) is unknown; it sets "
                    "the causal padding, so give it in filter_shape",
                    kFunction, filter_rank - 1));
  }
  if (*length < 1) {
    throw ValueError(
        fmt::format("{}: the kernel length is {}; expected at least 1", kFunction, *length));
  }
  const std::int64_t left_pad = options.filter_dilation * (*length - 1);

  StaticShape imshp;
  if (!options.input_shape.empty()) {
    imshp = options.input_shape;
    imshp.emplace_back(1);
  }
  StaticShape kshp;
  Variable kernel;
  if (options.unshared) {
    kshp = {filter_shape[0], filter_shape[1], 1, filter_shape[2], filter_shape[3], 1};
    kernel = dimshuffle(filters, {0, 1, -1, 2, 3, -1});
  } else {
    kshp = filter_shape;
    kshp.emplace_back(1);
    kernel = expand_dims(filters, 3);
  }
  const BorderMode border(std::vector<BorderMode::Entry>{
      BorderMode::Entry(std::pair<std::int64_t, std::int64_t>{left_pad, 0}),
      BorderMode::Entry(std::int64_t{0})});
  const Variable out = conv2d(expand_dims(input, 3), kernel,
                              ConvOptions{.input_shape = imshp,
                                          .filter_shape = kshp,
                                          .border_mode = border,
                                          .subsample = {options.subsample, 1},
                                          .filter_flip = options.filter_flip,
                                          .filter_dilation = {options.filter_dilation, 1},
                                          .num_groups = options.num_groups,
                                          .unshared = options.unshared});
  if (out.type().dim(3) == StaticDim{1}) return squeeze(out, {3});
  return subtensor(
      out, {IndexItem::all(), IndexItem::all(), IndexItem::all(), IndexItem::index(Dim(0))});
}

// ---------------------------------------------------------------------------------------------

Variable bilinear_kernel_1D(const Dim& ratio, bool normalize) {
  const std::int64_t r = checked_ratio("bilinear_kernel_1D", "ratio", ratio);
  const DType dtype = floatx();
  if (ratio.is_constant()) {
    return constant_of(bilinear_1d_values(r, normalize), {2 * r - 1}, dtype);
  }
  const Variable half = arange(Dim(1), ratio + Dim(1), Dim(1), dtype);
  const Variable tail = subtensor(half, {IndexItem::slice(Dim(-2), std::nullopt, Dim(-1))});
  const Variable kernel = concatenate({half, tail}, 0);
  if (!normalize) return kernel;
  return kernel / cast(dim_variable(ratio), dtype);
}

Variable bilinear_kernel_2D(const Dim& ratio, bool normalize) {
  return bilinear_kernel_2D(std::pair<Dim, Dim>{ratio, ratio}, normalize);
}

Variable bilinear_kernel_2D(const std::pair<Dim, Dim>& ratio, bool normalize) {
  const std::int64_t rows = checked_ratio("bilinear_kernel_2D", "the row ratio", ratio.first);
  const std::int64_t cols = checked_ratio("bilinear_kernel_2D", "the column ratio", ratio.second);
  if (ratio.first.is_constant() && ratio.second.is_constant()) {
    return constant_of(
        outer(bilinear_1d_values(rows, normalize), bilinear_1d_values(cols, normalize)),
        {2 * rows - 1, 2 * cols - 1}, floatx());
  }
  const Variable row_kernel = bilinear_kernel_1D(ratio.first, normalize);
  const Variable col_kernel = bilinear_kernel_1D(ratio.second, normalize);
  return dimshuffle(row_kernel, {0, -1}) * dimshuffle(col_kernel, {-1, 0});
}

// ---------------------------------------------------------------------------------------------

Variable bilinear_upsampling(const Variable& input, const BilinearUpsamplingOptions& options) {
  constexpr const char* kFunction = "bilinear_upsampling";
  if (options.ratio && options.frac_ratio) {
    throw ValueError(
        fmt::format("{}: both ratio ({}) and frac_ratio were given; give one of "
                    "them",
                    kFunction, *options.ratio));
  }
  if (!options.ratio && !options.frac_ratio) {
    throw ValueError(
        fmt::format("{}: neither ratio nor frac_ratio was given; give one of them", kFunction));
  }
  if (options.frac_ratio) {
    if (options.use_1D_kernel) {
      throw ValueError(
          fmt::format("{}: fractional ratios have no 1-D kernel method; pass "
                      "use_1D_kernel = false with frac_ratio",
                      kFunction));
    }
    return frac_bilinear_upsampling(input, *options.frac_ratio);
  }
  const std::int64_t r = *options.ratio;
  if (r < 1) {
    throw ValueError(fmt::format("{}: ratio is {}; expected a positive integer", kFunction, r));
  }
  check_upsampling_input(kFunction, input);
  const auto check_hint = [&](const std::optional<std::int64_t>& hint, const char* name, int axis) {
    if (!hint) return;
    if (*hint < 0) {
      throw ValueError(
          fmt::format("{}: {} is {}; expected a non-negative size", kFunction, name, *hint));
    }
    if (const StaticDim d = input.type().dim(axis); d && *d != *hint) {
      throw ShapeError(fmt::format("{}: {} is {} but the input ({}) has type {}", kFunction, name,
                                   *hint, input.label(), input.type().str()));
    }
  };
  check_hint(options.batch_size, "batch_size", 0);
  check_hint(options.num_input_channels, "num_input_channels", 1);

  const DType dtype = input.dtype();
  const ShapeDims in = shape_dims(input);
  const Dim up_rows = in[2] * Dim(r);
  const Dim up_cols = in[3] * Dim(r);
  const Dim up_batch = options.batch_size && options.num_input_channels
                           ? Dim(*options.batch_size * *options.num_input_channels)
                           : Dim::unknown();
  const Variable padded = replicated_channels(input);
  // Pads of the strided transpose that place output row h between input rows
  // (h - (r - 1) / 2) / r and the next one.
  const std::int64_t border = 2 * r - (r - 1) / 2 - 1;
  const std::int64_t taps = 2 * r - 1;
  const std::vector<double> k1 = bilinear_1d_values(r, true);

  Variable up;
  if (options.use_1D_kernel) {
    const Variable rows = conv2d_grad_wrt_inputs(
        padded, constant_of(k1, {1, 1, taps, 1}, dtype),
        ShapeDims{up_batch, Dim(1), up_rows, in[3] + Dim(2)},
        ConvOptions{.filter_shape = {1, 1, taps, 1},
                    .border_mode =
                        BorderMode{BorderMode::Entry(border), BorderMode::Entry(std::int64_t{0})},
                    .subsample = {r, 1}});
    up = conv2d_grad_wrt_inputs(
        rows, constant_of(k1, {1, 1, 1, taps}, dtype),
        ShapeDims{up_batch, Dim(1), up_rows, up_cols},
        ConvOptions{.filter_shape = {1, 1, 1, taps},
                    .border_mode =
                        BorderMode{BorderMode::Entry(std::int64_t{0}), BorderMode::Entry(border)},
                    .subsample = {1, r}});
  } else {
    up = conv2d_grad_wrt_inputs(padded, constant_of(outer(k1, k1), {1, 1, taps, taps}, dtype),
                                ShapeDims{up_batch, Dim(1), up_rows, up_cols},
                                ConvOptions{.filter_shape = {1, 1, taps, taps},
                                            .border_mode = BorderMode(border),
                                            .subsample = {r, r}});
  }
  return reshape(up, ShapeDims{in[0], in[1], up_rows, up_cols});
}

Variable frac_bilinear_upsampling(const Variable& input, const FracRatio& frac_ratio) {
  constexpr const char* kFunction = "frac_bilinear_upsampling";
  const auto [p_rows, q_rows] = reduced(frac_ratio.rows, "row");
  const auto [p_cols, q_cols] = reduced(frac_ratio.cols, "column");
  check_upsampling_input(kFunction, input);

  const DType dtype = input.dtype();
  const ShapeDims in = shape_dims(input);
  const Variable replicated = replicated_channels(input);

  // The kernel is the image here and the replicated input the filter bank: dilating the filters
  // by p and striding by q samples the p-times-interpolated signal every q-th point. The kernel
  // is zero-padded so that every output position sees a full filter.
  const Variable kernel =
      constant_of(outer(bilinear_1d_values(p_rows, true), bilinear_1d_values(p_cols, true)),
                  {1, 1, 2 * p_rows - 1, 2 * p_cols - 1}, dtype);
  const Dim double_pad_rows = (Dim(2) * in[2] - Dim(1)) * Dim(p_rows) + Dim(1);
  const Dim double_pad_cols = (Dim(2) * in[3] - Dim(1)) * Dim(p_cols) + Dim(1);
  const Dim pad_rows = floor_div(double_pad_rows, Dim(2));
  const Dim pad_cols = floor_div(double_pad_cols, Dim(2));
  Variable padded_kernel = zero_pad_axis(kernel, 2, pad_rows, double_pad_rows - pad_rows);
  padded_kernel = zero_pad_axis(padded_kernel, 3, pad_cols, double_pad_cols - pad_cols);

  const Variable up =
      conv2d(padded_kernel, replicated,
             ConvOptions{.subsample = {q_rows, q_cols}, .filter_dilation = {p_rows, p_cols}});
  const Dim out_rows = floor_div(Dim(p_rows) * in[2] - Dim(1), Dim(q_rows)) + Dim(1);
  const Dim out_cols = floor_div(Dim(p_cols) * in[3] - Dim(1), Dim(q_cols)) + Dim(1);
  return reshape(up, ShapeDims{in[0], in[1], out_rows, out_cols});
}

}  // namespace convgraph
