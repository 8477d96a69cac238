#include "convgraph/ops/conv/legacy_conv.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <atomic>
#include <iostream>
#include <memory>
#include <mutex>
#include <tuple>

#include "convgraph/base/error.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_params.hpp"
#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/shape.hpp"

namespace convgraph::legacy {
namespace {

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

void check_non_negative(const char* what, const StaticShape& shape) {
  for (const auto& d : shape) {
    if (d && *d < 0) {
      throw ValueError(
          fmt::format("ConvOp: {} {} has a negative entry; expected sizes >= 0 or "
                      "unknown",
                      what, static_shape_str(shape)));
    }
  }
}

std::string dim_str(const StaticDim& d) {
  return d ? std::to_string(*d) : std::string("?");
}

// Merges a parameter and a static dim of an input's type, which must agree when both are known.
StaticDim merge(const Op& op, const StaticDim& param, const StaticDim& typed, const char* what,
                const Variable& input) {
  if (param && typed && *param != *typed) {
    throw ShapeError(fmt::format("{}: input {} has type {}, so {} is {}; the op was built for {}",
                                 op.str(), input.label(), input.type().str(), what, *typed,
                                 *param));
  }
  return param ? param : typed;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ConvOp

ConvOp::ConvOp(ConvOpOptions options)
    : nkern_(options.nkern),
      bsize_(options.bsize),
      dx_(options.dx),
      dy_(options.dy),
      output_mode_(std::move(options.output_mode)) {
  if (output_mode_ == "half") {
    throw UnsupportedError(
        "ConvOp: output_mode 'half' is not implemented by the legacy ConvOp "
        "(only 'valid' and 'full'); use convgraph::conv2d");
  }
  if (output_mode_ != "valid" && output_mode_ != "full") {
    throw ValueError(
        fmt::format("ConvOp: invalid output_mode '{}'; expected 'valid' or 'full'", output_mode_));
  }
  if (dx_ < 1 || dy_ < 1) {
    throw ValueError(
        fmt::format("ConvOp: the strides (dx, dy) are ({}, {}); expected positive "
                    "integers",
                    dx_, dy_));
  }
  if (options.imshp.empty()) {
    imshp_ = StaticShape(3);
  } else if (options.imshp.size() == 2) {
    imshp_ = {1, options.imshp[0], options.imshp[1]};
  } else if (options.imshp.size() == 3) {
    imshp_ = options.imshp;
  } else {
    throw ValueError(
        fmt::format("ConvOp: imshp {} has {} entries; expected (channels, rows, "
                    "cols) or (rows, cols)",
                    static_shape_str(options.imshp), options.imshp.size()));
  }
  if (options.kshp.empty()) {
    kshp_ = StaticShape(2);
  } else if (options.kshp.size() == 2) {
    kshp_ = options.kshp;
  } else {
    throw ValueError(fmt::format("ConvOp: kshp {} has {} entries; expected (rows, cols)",
                                 static_shape_str(options.kshp), options.kshp.size()));
  }
  check_non_negative("imshp", imshp_);
  check_non_negative("kshp", kshp_);
  check_non_negative("nkern", {nkern_});
  check_non_negative("bsize", {bsize_});
  for (int a = 0; a < 2; ++a) {
    const StaticDim image = imshp_[static_cast<std::size_t>(1 + a)];
    const StaticDim kernel = kshp_[static_cast<std::size_t>(a)];
    if (!image || !kernel) continue;
    const std::int64_t stride = a == 0 ? dx_ : dy_;
    const std::int64_t span = output_mode_ == "valid" ? *image - *kernel : *image + *kernel - 2;
    if (floor_div(span, stride) + 1 < 1) {
      throw ValueError(
          fmt::format("ConvOp: an image of {}x{} and a kernel of {}x{} give no "
                      "output in '{}' mode",
                      dim_str(imshp_[1]), dim_str(imshp_[2]), dim_str(kshp_[0]), dim_str(kshp_[1]),
                      output_mode_));
    }
  }
}

bool ConvOp::all_shapes_known() const {
  for (const auto& d : imshp_) {
    if (!d) return false;
  }
  for (const auto& d : kshp_) {
    if (!d) return false;
  }
  return nkern_.has_value() && bsize_.has_value();
}

std::string ConvOp::str() const {
  return fmt::format("ConvOp{{{}, dx={}, dy={}, imshp={}, kshp={}, nkern={}, bsize={}}}",
                     output_mode_, dx_, dy_, static_shape_str(imshp_), static_shape_str(kshp_),
                     dim_str(nkern_), dim_str(bsize_));
}

bool ConvOp::equals(const Op& other) const {
  const auto* o = dynamic_cast<const ConvOp*>(&other);
  return o != nullptr && o->imshp_ == imshp_ && o->kshp_ == kshp_ && o->nkern_ == nkern_ &&
         o->bsize_ == bsize_ && o->dx_ == dx_ && o->dy_ == dy_ && o->output_mode_ == output_mode_;
}

std::size_t ConvOp::hash() const {
  std::size_t h = hash_values(std::string("ConvOp"), output_mode_, dx_, dy_, nkern_.value_or(-1),
                              bsize_.value_or(-1));
  for (const auto& d : imshp_) h = hash_combine(h, std::hash<std::int64_t>{}(d.value_or(-1)));
  for (const auto& d : kshp_) h = hash_combine(h, std::hash<std::int64_t>{}(d.value_or(-1)));
  return h;
}

std::vector<TensorType> ConvOp::make_outputs(const std::vector<Variable>& inputs) const {
  if (inputs.size() != 2) {
    throw ValueError(
        fmt::format("{}: expected 2 inputs (image, filters), got {}", str(), inputs.size()));
  }
  const Variable& image = inputs[0];
  const Variable& filters = inputs[1];
  for (const auto& [x, what, layout] :
       {std::tuple{&image, "the image", "(batch, channels, rows, cols)"},
        std::tuple{&filters, "the filters", "(filters, channels, rows, cols)"}}) {
    if (x->ndim() != 4) {
      throw TypeError(fmt::format("{}: {} ({}) has type {}; expected a 4-D tensor {}", str(), what,
                                  x->label(), x->type().str(), layout));
    }
    if (!is_float(x->dtype())) {
      throw TypeError(fmt::format("{}: {} ({}) has dtype {}; expected a floating-point tensor",
                                  str(), what, x->label(), dtype_name(x->dtype())));
    }
  }
  if (image.dtype() != filters.dtype()) {
    throw UnsupportedError(
        fmt::format("{}: the image has dtype {} and the filters {}; ConvOp "
                    "needs one dtype for both",
                    str(), dtype_name(image.dtype()), dtype_name(filters.dtype())));
  }
  const TensorType& it = image.type();
  const TensorType& ft = filters.type();
  const StaticDim batch = merge(*this, bsize_, it.dims[0], "the batch size", image);
  const StaticDim channels =
      merge(*this, imshp_[0], it.dims[1], "the number of image channels", image);
  const StaticDim rows = merge(*this, imshp_[1], it.dims[2], "the image height", image);
  const StaticDim cols = merge(*this, imshp_[2], it.dims[3], "the image width", image);
  const StaticDim count = merge(*this, nkern_, ft.dims[0], "the number of filters", filters);
  const StaticDim krows = merge(*this, kshp_[0], ft.dims[2], "the kernel height", filters);
  const StaticDim kcols = merge(*this, kshp_[1], ft.dims[3], "the kernel width", filters);
  if (channels && ft.dims[1] && *channels != *ft.dims[1]) {
    throw ShapeError(
        fmt::format("{}: the image has {} channels but the filters ({}, type {}) "
                    "read {}",
                    str(), *channels, filters.label(), ft.str(), *ft.dims[1]));
  }
  StaticShape out{batch, count, std::nullopt, std::nullopt};
  for (int a = 0; a < 2; ++a) {
    const StaticDim image_size = a == 0 ? rows : cols;
    const StaticDim kernel_size = a == 0 ? krows : kcols;
    if (!image_size || !kernel_size) continue;
    const std::int64_t span =
        output_mode_ == "valid" ? *image_size - *kernel_size : *image_size + *kernel_size - 2;
    const std::int64_t size = floor_div(span, a == 0 ? dx_ : dy_) + 1;
    if (size < 1) {
      throw ShapeError(
          fmt::format("{}: an image of type {} and filters of type {} give no output "
                      "in '{}' mode",
                      str(), it.str(), ft.str(), output_mode_));
    }
    out[static_cast<std::size_t>(2 + a)] = size;
  }
  return {TensorType(image.dtype(), std::move(out), it.device)};
}

std::vector<ShapeDims> ConvOp::infer_shape(const Node& /*node*/,
                                           const std::vector<ShapeDims>& input_shapes) const {
  const ShapeDims& image = input_shapes.at(0);
  const ShapeDims& filters = input_shapes.at(1);
  const auto pick = [](const StaticDim& param, const Dim& shape) {
    return param ? Dim(*param) : shape;
  };
  const AxisBorder border = output_mode_ == "valid" ? AxisBorder::valid() : AxisBorder::full();
  return {ShapeDims{
      pick(bsize_, image[0]), pick(nkern_, filters[0]),
      get_conv_shape_1axis(pick(imshp_[1], image[2]), pick(kshp_[0], filters[2]), border, dx_),
      get_conv_shape_1axis(pick(imshp_[2], image[3]), pick(kshp_[1], filters[3]), border, dy_)}};
}

std::vector<Variable> ConvOp::grad(const std::vector<Variable>& inputs,
                                   const std::vector<Variable>& /*outputs*/,
                                   const std::vector<Variable>& output_grads) const {
  const bool strided = dx_ != 1 || dy_ != 1;
  if (output_mode_ == "valid" && strided) {
    throw UnsupportedError(
        fmt::format("{}: the gradient is disabled for 'valid' convolutions with "
                    "strides ({}, {}) != (1, 1); build the graph with "
                    "convgraph::conv2d instead",
                    str(), dx_, dy_));
  }
  if ((dx_ != 1 && dx_ != 2) || (dy_ != 1 && dy_ != 2)) {
    throw UnsupportedError(
        fmt::format("{}: the gradient is implemented for strides 1 and 2 only, "
                    "not ({}, {}); build the graph with convgraph::conv2d "
                    "instead",
                    str(), dx_, dy_));
  }
  if (strided && !all_shapes_known()) {
    throw ValueError(
        fmt::format("{}: the gradient of a strided ConvOp needs every shape "
                    "(image_shape and filter_shape) given when it is built",
                    str()));
  }
  const Variable& image = inputs[0];
  const Variable& filters = inputs[1];
  const ConvParams params =
      make_conv_params(2, BorderMode(output_mode_), {dx_, dy_}, true, {}, 1, false,
                       StaticShape{bsize_, imshp_[0], imshp_[1], imshp_[2]},
                       StaticShape{nkern_, imshp_[0], kshp_[0], kshp_[1]});
  const ShapeDims image_dims = shape_dims(image);
  const ShapeDims filter_dims = shape_dims(filters);
  return {abstract_conv_grad_inputs(params, filters, output_grads[0],
                                    ShapeDims{image_dims[2], image_dims[3]}, false),
          abstract_conv_grad_weights(params, image, output_grads[0],
                                     ShapeDims{filter_dims[2], filter_dims[3]}, false)};
}

std::vector<Variable> ConvOp::r_op(const std::vector<Variable>& inputs,
                                   const std::vector<Variable>& /*outputs*/,
                                   const std::vector<Variable>& eval_points) const {
  const auto self = std::make_shared<ConvOp>(*this);
  Variable result;
  if (eval_points[0].defined()) result = apply(self, {eval_points[0], inputs[1]});
  if (eval_points[1].defined()) {
    const Variable term = apply(self, {inputs[0], eval_points[1]});
    result = result.defined() ? result + term : term;
  }
  return {result};
}

void ConvOp::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  const Tensor& image = inputs.at(0);
  const Tensor& filters = inputs.at(1);
  if (image.rank() != 4 || filters.rank() != 4) {
    throw TypeError(
        fmt::format("{}: the image has shape {} and the filters {}; expected 4-D "
                    "tensors",
                    str(), shape_str(image.shape()), shape_str(filters.shape())));
  }
  if (image.dtype() != filters.dtype() || !is_float(image.dtype())) {
    throw TypeError(
        fmt::format("{}: the image has dtype {} and the filters {}; expected one "
                    "floating-point dtype",
                    str(), dtype_name(image.dtype()), dtype_name(filters.dtype())));
  }
  const Shape& is = image.shape();
  const Shape& fs = filters.shape();
  const auto mismatch = [&](const StaticShape& expected, const Shape& actual) {
    for (std::size_t i = 0; i < expected.size(); ++i) {
      if (expected[i] && *expected[i] != actual[i]) return true;
    }
    return false;
  };
  if (mismatch(imshp_, {is[1], is[2], is[3]})) {
    throw ShapeError(
        fmt::format("{}: the image has shape {}; its (channels, rows, cols) do not "
                    "match the image shape {} the op was built for",
                    str(), shape_str(is), static_shape_str(imshp_)));
  }
  if (mismatch(kshp_, {fs[2], fs[3]})) {
    throw ShapeError(
        fmt::format("{}: the filters have shape {}; their (rows, cols) do not match "
                    "the filter shape {} the op was built for",
                    str(), shape_str(fs), static_shape_str(kshp_)));
  }
  if (bsize_ && *bsize_ != is[0]) {
    throw ShapeError(
        fmt::format("{}: the image has shape {}; its batch size {} is not the {} "
                    "the op was built for",
                    str(), shape_str(is), is[0], *bsize_));
  }
  if (nkern_ && *nkern_ != fs[0]) {
    throw ShapeError(
        fmt::format("{}: the filters have shape {}; their number {} is not the {} "
                    "the op was built for",
                    str(), shape_str(fs), fs[0], *nkern_));
  }
  if (is[1] != fs[1]) {
    throw ShapeError(
        fmt::format("{}: the image has shape {} ({} channels) but the filters have "
                    "shape {} ({} channels)",
                    str(), shape_str(is), is[1], shape_str(fs), fs[1]));
  }
  const bool full = output_mode_ == "full";
  const std::int64_t kh = fs[2], kw = fs[3];
  const std::int64_t pad_h = full ? kh - 1 : 0, pad_w = full ? kw - 1 : 0;
  const std::int64_t oh = floor_div(is[2] + 2 * pad_h - kh, dx_) + 1;
  const std::int64_t ow = floor_div(is[3] + 2 * pad_w - kw, dy_) + 1;
  if (oh < 1 || ow < 1) {
    throw ShapeError(
        fmt::format("{}: an image of shape {} and filters of shape {} give no "
                    "output in '{}' mode",
                    str(), shape_str(is), shape_str(fs), output_mode_));
  }
  const std::int64_t batch = is[0], channels = is[1], height = is[2], width = is[3];
  const std::int64_t count = fs[0];
  const std::vector<double> in = image.to_vector<double>();
  const std::vector<double> w = filters.to_vector<double>();
  std::vector<double> out(static_cast<std::size_t>(batch * count * oh * ow), 0.0);
  const auto at_in = [&](std::int64_t b, std::int64_t c, std::int64_t y, std::int64_t x) {
    return in[static_cast<std::size_t>(((b * channels + c) * height + y) * width + x)];
  };
  const auto at_w = [&](std::int64_t m, std::int64_t c, std::int64_t i, std::int64_t j) {
    return w[static_cast<std::size_t>(((m * channels + c) * kh + i) * kw + j)];
  };
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t m = 0; m < count; ++m) {
      for (std::int64_t y = 0; y < oh; ++y) {
        for (std::int64_t x = 0; x < ow; ++x) {
          double acc = 0.0;
          for (std::int64_t c = 0; c < channels; ++c) {
            for (std::int64_t i = 0; i < kh; ++i) {
              const std::int64_t iy = y * dx_ + i - pad_h;
              if (iy < 0 || iy >= height) continue;
              for (std::int64_t j = 0; j < kw; ++j) {
                const std::int64_t ix = x * dy_ + j - pad_w;
                if (ix < 0 || ix >= width) continue;
                acc += at_in(b, c, iy, ix) * at_w(m, c, kh - 1 - i, kw - 1 - j);
              }
            }
          }
          out[static_cast<std::size_t>(((b * count + m) * oh + y) * ow + x)] = acc;
        }
      }
    }
  }
  outputs.at(0) = Tensor::from_vector<double>(out, {batch, count, oh, ow}).cast(image.dtype());
}

double ConvOp::flops(const Shape& image, const Shape& filters, const Shape& output) const {
  if (image.size() != 4 || filters.size() != 4 || output.size() != 4) {
    throw ShapeError(fmt::format("{}: flops needs 4-D shapes; got image {}, filters {}, output {}",
                                 str(), shape_str(image), shape_str(filters), shape_str(output)));
  }
  if (image[1] != filters[1]) {
    throw ShapeError(
        fmt::format("{}: flops: the image {} has {} channels but the filters {} "
                    "read {}",
                    str(), shape_str(image), image[1], shape_str(filters), filters[1]));
  }
  const auto d = [](std::int64_t v) { return static_cast<double>(v); };
  const double per_tap =
      2.0 * d(image[0]) * d(image[1]) * d(filters[0]) * d(filters[2]) * d(filters[3]);
  if (output_mode_ == "valid") return per_tap * d(output[2]) * d(output[3]);
  return per_tap * d(image[2]) * d(image[3]);
}

// ---------------------------------------------------------------------------------------------

namespace {
std::once_flag g_deprecation_once;
std::atomic<bool> g_deprecation_issued{false};
}  // namespace

bool deprecation_warning_issued() {
  return g_deprecation_issued.load();
}

Variable conv2d(const Variable& input, const Variable& filters, const LegacyConvOptions& options) {
  std::call_once(g_deprecation_once, [] {
    std::cerr << "convgraph: legacy_conv2d is deprecated; use conv2d\n";
    g_deprecation_issued.store(true);
  });
  const StaticShape& image_shape = options.image_shape;
  const StaticShape& filter_shape = options.filter_shape;
  if (!image_shape.empty() && image_shape.size() != 4) {
    throw ValueError(
        fmt::format("legacy conv2d: image_shape {} has {} entries; expected 4 "
                    "(batch, channels, rows, cols) or none",
                    static_shape_str(image_shape), image_shape.size()));
  }
  if (!filter_shape.empty() && filter_shape.size() != 4) {
    throw ValueError(
        fmt::format("legacy conv2d: filter_shape {} has {} entries; expected 4 "
                    "(filters, channels, rows, cols) or none",
                    static_shape_str(filter_shape), filter_shape.size()));
  }
  if (options.subsample.size() != 2) {
    throw ValueError(
        fmt::format("legacy conv2d: subsample ({}) has {} entries; expected 2 "
                    "(rows, cols)",
                    fmt::join(options.subsample, ", "), options.subsample.size()));
  }
  if (!image_shape.empty() && !filter_shape.empty() && image_shape[1] && filter_shape[1] &&
      *image_shape[1] != *filter_shape[1]) {
    throw ShapeError(
        fmt::format("legacy conv2d: image_shape {} has {} channels but filter_shape "
                    "{} reads {}",
                    static_shape_str(image_shape), *image_shape[1], static_shape_str(filter_shape),
                    *filter_shape[1]));
  }
  ConvOpOptions op_options{
      .dx = options.subsample[0], .dy = options.subsample[1], .output_mode = options.border_mode};
  if (!image_shape.empty()) {
    op_options.bsize = image_shape[0];
    op_options.imshp = StaticShape(image_shape.begin() + 1, image_shape.end());
  }
  if (!filter_shape.empty()) {
    op_options.nkern = filter_shape[0];
    op_options.kshp = StaticShape(filter_shape.begin() + 2, filter_shape.end());
  }
  return apply(std::make_shared<ConvOp>(std::move(op_options)), {input, filters});
}

}  // namespace convgraph::legacy
