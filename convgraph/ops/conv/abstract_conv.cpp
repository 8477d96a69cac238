#include "convgraph/ops/conv/abstract_conv.hpp"

#include <fmt/format.h>

#include "convgraph/base/config.hpp"
#include "convgraph/ops/tensor/assert.hpp"
#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/shape.hpp"
#include "convgraph/ops/tensor/subtensor.hpp"

namespace convgraph {
namespace {

// The static shape of a variable merged with a hint: a dim known on either side is known; known
// on both sides and different is a build-time ShapeError.
StaticShape merge_hint(const std::string& op, const char* what, const char* hint_name,
                       const Variable& var, const StaticShape& hint) {
  StaticShape merged = var.type().dims;
  for (std::size_t i = 0; i < merged.size() && i < hint.size(); ++i) {
    if (!hint[i]) continue;
    if (merged[i] && *merged[i] != *hint[i]) {
      throw ShapeError(fmt::format(
          "{}: the {} {} has static shape {}, which contradicts the "
          "given {} {} at dim {}",
          op, what, var.label(), var.type().str(), hint_name, static_shape_str(hint), i));
    }
    merged[i] = hint[i];
  }
  return merged;
}

void check_rank(const std::string& op, const char* what, const Variable& v, int rank,
                const char* extra = "") {
  if (v.ndim() != rank) {
    throw TypeError(fmt::format("{}: the {} {} must be a {}-D tensor{}; got type {} (rank {})", op,
                                what, v.label(), rank, extra, v.type().str(), v.ndim()));
  }
}

void check_float(const std::string& op, const char* what, const Variable& v) {
  if (!is_float(v.dtype())) {
    throw TypeError(
        fmt::format("{}: the {} {} has dtype {}; convolutions need float16, float32 "
                    "or float64",
                    op, what, v.label(), dtype_name(v.dtype())));
  }
}

// The values of an int64 shape vector where they are constants (a constant vector, or a
// MakeVector with constant entries).
StaticShape known_values(const Variable& vec, int n) {
  StaticShape out(static_cast<std::size_t>(n));
  if (vec.is_constant()) {
    const auto values = vec.constant_value().to_vector<std::int64_t>();
    for (std::size_t i = 0; i < out.size() && i < values.size(); ++i) out[i] = values[i];
    return out;
  }
  if (Node* node = vec.owner(); node != nullptr && node->op->name() == "MakeVector") {
    for (std::size_t i = 0; i < out.size() && i < node->inputs.size(); ++i) {
      if (node->inputs[i].is_constant())
        out[i] = node->inputs[i].constant_value().item<std::int64_t>();
    }
  }
  return out;
}

// Entry I of an int64 shape vector as a Dim.
Dim vector_entry(const Variable& vec, int i) {
  const StaticShape known = known_values(vec, i + 1);
  if (known[static_cast<std::size_t>(i)]) return Dim(*known[static_cast<std::size_t>(i)]);
  return Dim(subtensor(vec, {IndexItem::index(Dim(i))}));
}

void check_groups(const std::string& op, const ConvParams& p, const StaticDim& image_channels,
                  const StaticDim& filters, const StaticDim& kernel_channels) {
  const std::int64_t g = p.num_groups;
  if (image_channels && *image_channels % g != 0) {
    throw ShapeError(
        fmt::format("{}: the image has {} channels, which is not divisible by "
                    "num_groups={}",
                    op, *image_channels, g));
  }
  if (filters && *filters % g != 0) {
    throw ShapeError(
        fmt::format("{}: there are {} filters, which is not divisible by "
                    "num_groups={}",
                    op, *filters, g));
  }
  if (image_channels && kernel_channels && *image_channels / g != *kernel_channels) {
    throw ShapeError(
        fmt::format("{}: the kernel has {} input channels, but the image has {} "
                    "channels in {} group(s), so each group needs {}",
                    op, *kernel_channels, *image_channels, g, *image_channels / g));
  }
}

// Spatial dims of a convolution's output must be at least 1; those of an image (the result of
// gradInputs) at least 0, since padding lets a forward convolution read an empty image.
void check_output(const std::string& op, const StaticShape& out, const char* what,
                  std::int64_t minimum = 1) {
  for (std::size_t i = 2; i < out.size(); ++i) {
    if (out[i] && *out[i] < minimum) {
      throw ShapeError(
          fmt::format("{}: the convolution would produce an invalid {} shape {} "
                      "(spatial dim {} is {}; it must be at least {})",
                      op, what, static_shape_str(out), i, *out[i], minimum));
    }
  }
}

ShapeDims spatial_of(const ShapeDims& dims, int convdim) {
  return ShapeDims(dims.end() - convdim, dims.end());
}

ShapeDims spatial_dims_of(const Variable& v, int convdim) {
  return spatial_of(symbolic_shape(v), convdim);
}

// Sum of the defined terms; undefined when none is.
Variable sum_defined(const Variable& a, const Variable& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return add(a, b);
}

}  // namespace

AbstractConv::AbstractConv(ConvDirection direction, ConvParams params)
    : direction_(direction), params_(std::move(params)) {}

std::string AbstractConv::name() const {
  std::string n = fmt::format("AbstractConv{}d", params_.convdim);
  if (direction_ == ConvDirection::grad_inputs) n += "_gradInputs";
  if (direction_ == ConvDirection::grad_weights) n += "_gradWeights";
  return n;
}

std::string AbstractConv::str() const {
  return fmt::format("{}{{{}}}", name(), params_.str());
}

bool AbstractConv::equals(const Op& other) const {
  const auto* o = dynamic_cast<const AbstractConv*>(&other);
  return o != nullptr && o->direction_ == direction_ && o->params_ == params_;
}

std::size_t AbstractConv::hash() const {
  return hash_combine(params_.hash(), static_cast<std::size_t>(direction_) + 0xc0);
}

std::vector<TensorType> AbstractConv::make_outputs(const std::vector<Variable>& inputs) const {
  const std::string op = str();
  const ConvParams& p = params_;
  const int n = p.convdim;
  const std::size_t expected_inputs = direction_ == ConvDirection::forward ? 2 : 3;
  if (inputs.size() != expected_inputs) {
    throw ValueError(
        fmt::format("{}: {} inputs given, expected {}", op, inputs.size(), expected_inputs));
  }
  const char* unshared_note = p.unshared ? " for an unshared convolution" : "";
  if (inputs[0].dtype() != inputs[1].dtype()) {
    throw TypeError(
        fmt::format("{}: inputs {} ({}) and {} ({}) have different dtypes; cast one "
                    "of them (the builder functions do this)",
                    op, inputs[0].label(), dtype_name(inputs[0].dtype()), inputs[1].label(),
                    dtype_name(inputs[1].dtype())));
  }
  if (inputs[0].type().device != inputs[1].type().device) {
    throw ValueError(fmt::format("{}: inputs are on different devices ({} and {})", op,
                                 inputs[0].type().device.str(), inputs[1].type().device.str()));
  }
  if (direction_ != ConvDirection::forward) {
    const Variable& shape = inputs[2];
    if (shape.ndim() != 1 || !is_integer(shape.dtype()) || shape.type().dims[0] != StaticDim(n)) {
      throw TypeError(
          fmt::format("{}: the shape input {} must be an integer vector of {} "
                      "spatial sizes; got type {}",
                      op, shape.label(), n, shape.type().str()));
    }
  }
  const TensorType& first = inputs[0].type();
  StaticShape out;
  switch (direction_) {
    case ConvDirection::forward: {
      check_rank(op, "image", inputs[0], p.image_rank());
      check_rank(op, "kernel", inputs[1], p.kernel_rank(), unshared_note);
      check_float(op, "image", inputs[0]);
      const StaticShape img = merge_hint(op, "image", "imshp", inputs[0], p.imshp);
      const StaticShape ker = merge_hint(op, "kernel", "kshp", inputs[1], p.kshp);
      check_groups(op, p, img[1], ker[0], ker[ker.size() - static_cast<std::size_t>(n) - 1]);
      out = to_static(get_conv_output_shape(dims_of(TensorType(first.dtype, img)),
                                            dims_of(TensorType(first.dtype, ker)), p.border,
                                            p.subsample, p.dilation));
      check_output(op, out, "output");
      if (p.unshared) {
        for (int a = 0; a < n; ++a) {
          const auto& region = ker[static_cast<std::size_t>(1 + a)];
          const auto& o = out[static_cast<std::size_t>(2 + a)];
          if (region && o && *region != *o) {
            throw ShapeError(
                fmt::format("{}: the unshared kernel has regions {} but the output "
                            "would be {}; they must match",
                            op, static_shape_str(ker), static_shape_str(out)));
          }
        }
      }
      break;
    }
    case ConvDirection::grad_inputs: {
      check_rank(op, "kernel", inputs[0], p.kernel_rank(), unshared_note);
      check_rank(op, "topgrad", inputs[1], p.image_rank());
      check_float(op, "kernel", inputs[0]);
      const StaticShape ker = merge_hint(op, "kernel", "kshp", inputs[0], p.kshp);
      const StaticShape top = inputs[1].type().dims;
      const StaticShape spatial = known_values(inputs[2], n);
      const StaticDim kernel_channels = ker[ker.size() - static_cast<std::size_t>(n) - 1];
      out = {top[0], kernel_channels ? StaticDim(*kernel_channels * p.num_groups) : std::nullopt};
      for (int a = 0; a < n; ++a) out.push_back(spatial[static_cast<std::size_t>(a)]);
      for (std::size_t i = 0; i < out.size(); ++i) {
        const auto& hint = p.imshp[i];
        if (hint && out[i] && *hint != *out[i]) {
          throw ShapeError(
              fmt::format("{}: the image gradient would have shape {}, which "
                          "contradicts the given imshp {}",
                          op, static_shape_str(out), static_shape_str(p.imshp)));
        }
        if (hint) out[i] = hint;
      }
      check_output(op, out, "input", 0);
      check_groups(op, p, out[1], ker[0], kernel_channels);
      if (p.unshared) {
        for (int a = 0; a < n; ++a) {
          const auto& region = ker[static_cast<std::size_t>(1 + a)];
          const auto& t = top[static_cast<std::size_t>(2 + a)];
          if (region && t && *region != *t) {
            throw ShapeError(
                fmt::format("{}: the unshared kernel has regions {} but topgrad has "
                            "spatial shape {}; they must match",
                            op, static_shape_str(ker), static_shape_str(top)));
          }
        }
      }
      if (top[1] && ker[0] && *top[1] != *ker[0]) {
        throw ShapeError(fmt::format("{}: topgrad {} has {} channels but there are {} filters", op,
                                     inputs[1].type().str(), *top[1], *ker[0]));
      }
      const StaticShape expected = to_static(get_conv_output_shape(
          dims_of(TensorType(first.dtype, out)), dims_of(TensorType(first.dtype, ker)), p.border,
          p.subsample, p.dilation));
      for (std::size_t i = 0; i < expected.size(); ++i) {
        if (expected[i] && top[i] && *expected[i] != *top[i]) {
          throw ShapeError(fmt::format(
              "{}: invalid input_shape for gradInputs: the given "
              "input_shape {} would produce an output of shape {}, but "
              "the given topgrad has shape {}",
              op, static_shape_str(out), static_shape_str(expected), static_shape_str(top)));
        }
      }
      break;
    }
    case ConvDirection::grad_weights: {
      check_rank(op, "image", inputs[0], p.image_rank());
      check_rank(op, "topgrad", inputs[1], p.image_rank());
      check_float(op, "image", inputs[0]);
      const StaticShape img = merge_hint(op, "image", "imshp", inputs[0], p.imshp);
      const StaticShape top = inputs[1].type().dims;
      const StaticShape spatial = known_values(inputs[2], n);
      const StaticDim per_group = img[1] ? StaticDim(*img[1] / p.num_groups) : std::nullopt;
      out = {top[1]};
      if (p.unshared) {
        for (int a = 0; a < n; ++a) out.push_back(top[static_cast<std::size_t>(2 + a)]);
      }
      out.push_back(per_group);
      for (int a = 0; a < n; ++a) out.push_back(spatial[static_cast<std::size_t>(a)]);
      for (std::size_t i = 0; i < out.size(); ++i) {
        const auto& hint = p.kshp[i];
        if (hint && out[i] && *hint != *out[i]) {
          throw ShapeError(
              fmt::format("{}: the kernel gradient would have shape {}, which "
                          "contradicts the given kshp {}",
                          op, static_shape_str(out), static_shape_str(p.kshp)));
        }
        if (hint) out[i] = hint;
      }
      check_groups(op, p, img[1], out[0], out[out.size() - static_cast<std::size_t>(n) - 1]);
      const StaticShape expected = to_static(get_conv_output_shape(
          dims_of(TensorType(first.dtype, img)), dims_of(TensorType(first.dtype, out)), p.border,
          p.subsample, p.dilation));
      for (std::size_t i = 2; i < expected.size(); ++i) {
        if (expected[i] && top[i] && *expected[i] != *top[i]) {
          throw ShapeError(
              fmt::format("{}: invalid kernel shape for gradWeights: an image of "
                          "shape {} and a kernel of shape {} give an output of "
                          "shape {}, but the given topgrad has shape {}",
                          op, static_shape_str(img), static_shape_str(out),
                          static_shape_str(expected), static_shape_str(top)));
        }
      }
      if (img[0] && top[0] && *img[0] != *top[0]) {
        throw ShapeError(fmt::format("{}: the image has batch size {} but topgrad has {}", op,
                                     *img[0], *top[0]));
      }
      break;
    }
  }
  return {TensorType(first.dtype, out, first.device)};
}

std::vector<ShapeDims> AbstractConv::infer_shape(const Node& node,
                                                 const std::vector<ShapeDims>& input_shapes) const {
  const ConvParams& p = params_;
  const int n = p.convdim;
  auto with_hint = [](ShapeDims dims, const StaticShape& hint) {
    for (std::size_t i = 0; i < dims.size() && i < hint.size(); ++i) {
      if (hint[i]) dims[i] = Dim(*hint[i]);
    }
    return dims;
  };
  ShapeDims out;
  switch (direction_) {
    case ConvDirection::forward:
      out = get_conv_output_shape(with_hint(input_shapes[0], p.imshp),
                                  with_hint(input_shapes[1], p.kshp), p.border, p.subsample,
                                  p.dilation);
      break;
    case ConvDirection::grad_inputs: {
      const ShapeDims ker = with_hint(input_shapes[0], p.kshp);
      out = {input_shapes[1][0],
             ker[ker.size() - static_cast<std::size_t>(n) - 1] * Dim(p.num_groups)};
      for (int a = 0; a < n; ++a) out.push_back(vector_entry(node.inputs[2], a));
      out = with_hint(out, p.imshp);
      break;
    }
    case ConvDirection::grad_weights: {
      const ShapeDims img = with_hint(input_shapes[0], p.imshp);
      const ShapeDims& top = input_shapes[1];
      out = {top[1]};
      if (p.unshared) {
        for (int a = 0; a < n; ++a) out.push_back(top[static_cast<std::size_t>(2 + a)]);
      }
      out.push_back(floor_div(img[1], Dim(p.num_groups)));
      for (int a = 0; a < n; ++a) out.push_back(vector_entry(node.inputs[2], a));
      out = with_hint(out, p.kshp);
      break;
    }
  }
  return {out};
}

std::vector<Variable> AbstractConv::grad(const std::vector<Variable>& inputs,
                                         const std::vector<Variable>& /*outputs*/,
                                         const std::vector<Variable>& output_grads) const {
  const ConvParams& p = params_;
  const int n = p.convdim;
  const Variable& g = output_grads[0];
  switch (direction_) {
    case ConvDirection::forward: {
      const Variable& image = inputs[0];
      const Variable& kernel = inputs[1];
      return {abstract_conv_grad_inputs(p, kernel, g, spatial_dims_of(image, n), false),
              abstract_conv_grad_weights(p, image, g, spatial_dims_of(kernel, n), false)};
    }
    case ConvDirection::grad_inputs: {
      const Variable& kernel = inputs[0];
      const Variable& top = inputs[1];
      return {abstract_conv_grad_weights(p, g, top, spatial_dims_of(kernel, n), false),
              abstract_conv(p, g, kernel), Variable()};
    }
    case ConvDirection::grad_weights: {
      const Variable& image = inputs[0];
      const Variable& top = inputs[1];
      return {abstract_conv_grad_inputs(p, g, top, spatial_dims_of(image, n), false),
              abstract_conv(p, image, g), Variable()};
    }
  }
  return {};
}

std::vector<Variable> AbstractConv::r_op(const std::vector<Variable>& inputs,
                                         const std::vector<Variable>& /*outputs*/,
                                         const std::vector<Variable>& eval_points) const {
  // Every direction is bilinear in its first two inputs, so R(f(a, b)) = f(Ra, b) + f(a, Rb).
  const ConvParams& p = params_;
  const Variable& ra = eval_points[0];
  const Variable& rb = eval_points[1];
  Variable first, second;
  switch (direction_) {
    case ConvDirection::forward:
      if (ra.defined()) first = abstract_conv(p, ra, inputs[1]);
      if (rb.defined()) second = abstract_conv(p, inputs[0], rb);
      break;
    case ConvDirection::grad_inputs: {
      ShapeDims spatial;
      for (int a = 0; a < p.convdim; ++a) spatial.push_back(vector_entry(inputs[2], a));
      if (ra.defined()) first = abstract_conv_grad_inputs(p, ra, inputs[1], spatial, false);
      if (rb.defined()) second = abstract_conv_grad_inputs(p, inputs[0], rb, spatial, false);
      break;
    }
    case ConvDirection::grad_weights: {
      ShapeDims spatial;
      for (int a = 0; a < p.convdim; ++a) spatial.push_back(vector_entry(inputs[2], a));
      if (ra.defined()) first = abstract_conv_grad_weights(p, ra, inputs[1], spatial, false);
      if (rb.defined()) second = abstract_conv_grad_weights(p, inputs[0], rb, spatial, false);
      break;
    }
  }
  return {sum_defined(first, second)};
}

void AbstractConv::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  const ConvParams& p = params_;
  auto check_hint = [&](const Shape& shape, const StaticShape& hint, const char* what,
                        const char* hint_name) {
    for (std::size_t i = 0; i < hint.size() && i < shape.size(); ++i) {
      if (hint[i] && *hint[i] != shape[i]) {
        throw ShapeError(
            fmt::format("{}: the {} has shape {}, which does not match the given {} "
                        "{}",
                        str(), what, shape_str(shape), hint_name, static_shape_str(hint)));
      }
    }
  };
  switch (direction_) {
    case ConvDirection::forward:
      check_hint(inputs[0].shape(), p.imshp, "image", "imshp");
      check_hint(inputs[1].shape(), p.kshp, "kernel", "kshp");
      outputs[0] = reference_conv_forward(p, inputs[0], inputs[1]);
      break;
    case ConvDirection::grad_inputs: {
      check_hint(inputs[0].shape(), p.kshp, "kernel", "kshp");
      const Shape spatial = inputs[2].to_vector<std::int64_t>();
      Shape result{inputs[1].dim(0), inputs[0].dim(-p.convdim - 1) * p.num_groups};
      result.insert(result.end(), spatial.begin(), spatial.end());
      check_hint(result, p.imshp, "image gradient", "imshp");
      outputs[0] = reference_conv_grad_inputs(p, inputs[0], inputs[1], spatial);
      break;
    }
    case ConvDirection::grad_weights: {
      check_hint(inputs[0].shape(), p.imshp, "image", "imshp");
      const Shape spatial = inputs[2].to_vector<std::int64_t>();
      Shape result{inputs[1].dim(1)};
      if (p.unshared) {
        for (int a = 0; a < p.convdim; ++a) result.push_back(inputs[1].dim(2 + a));
      }
      result.push_back(inputs[0].dim(1) / p.num_groups);
      result.insert(result.end(), spatial.begin(), spatial.end());
      check_hint(result, p.kshp, "kernel gradient", "kshp");
      outputs[0] = reference_conv_grad_weights(p, inputs[0], inputs[1], spatial);
      break;
    }
  }
}

std::optional<double> AbstractConv::flops(const std::vector<Shape>& input_shapes,
                                          const std::vector<Shape>& output_shapes) const {
  // conv_flops reads the batch and channels from the image, the filters and taps from the
  // kernel and the positions from the output; a rank too small for that means the shapes are
  // not a convolution's, and no count beats a wrong one.
  const auto rank = static_cast<std::size_t>(params_.convdim) + 2;
  if (input_shapes.size() < 2 || output_shapes.empty()) return std::nullopt;
  const Shape& a = input_shapes[0];
  const Shape& b = input_shapes[1];
  const Shape& result = output_shapes[0];
  if (a.size() < rank || b.size() < rank || result.size() < rank) return std::nullopt;
  switch (direction_) {
    case ConvDirection::forward:  // (image, kernel) -> output
      return conv_flops(params_, a, b, result);
    case ConvDirection::grad_inputs:  // (kernel, topgrad) -> image
      return conv_flops(params_, result, a, b);
    case ConvDirection::grad_weights:  // (image, topgrad) -> kernel
      return conv_flops(params_, a, result, b);
  }
  return std::nullopt;
}

double conv_flops(const ConvParams& params, const Shape& image, const Shape& kernel,
                  const Shape& output) {
  const int n = params.convdim;
  double spatial_out = 1, spatial_kernel = 1;
  for (int a = 0; a < n; ++a) {
    spatial_out *= static_cast<double>(
        output.at(output.size() - static_cast<std::size_t>(n) + static_cast<std::size_t>(a)));
    spatial_kernel *= static_cast<double>(
        kernel.at(kernel.size() - static_cast<std::size_t>(n) + static_cast<std::size_t>(a)));
  }
  const double batch = static_cast<double>(image.at(0));
  const double channels_per_group =
      static_cast<double>(image.at(1)) / static_cast<double>(params.num_groups);
  const double filters = static_cast<double>(kernel.at(0));
  return 2.0 * batch * filters * spatial_out * channels_per_group * spatial_kernel;
}

// ---- builders ----

namespace {
Variable cast_like(const Variable& v, const Variable& like) {
  if (v.dtype() == like.dtype() || !is_float(v.dtype())) return v;
  return cast(v, like.dtype());
}

Variable spatial_vector(const std::string& who, const ShapeDims& spatial, int convdim) {
  if (static_cast<int>(spatial.size()) != convdim) {
    throw ValueError(
        fmt::format("{}: {} spatial sizes given, expected {}", who, spatial.size(), convdim));
  }
  for (std::size_t i = 0; i < spatial.size(); ++i) {
    if (spatial[i].is_unknown()) {
      throw ValueError(
          fmt::format("{}: spatial size {} is unknown; it must be a constant or a "
                      "symbolic integer",
                      who, i));
    }
  }
  return shape_vector(spatial);
}
}  // namespace

Variable abstract_conv(const ConvParams& params, const Variable& image, const Variable& kernel) {
  Variable img = image;
  Variable ker = cast_like(kernel, image);
  img = assert_shape(img, params.imshp,
                     "AbstractConv shape mismatch: shape of image does not match given imshp.");
  ker = assert_shape(ker, params.kshp,
                     "AbstractConv shape mismatch: shape of filters does not match given kshp.");
  return apply(std::make_shared<AbstractConv>(ConvDirection::forward, params), {img, ker});
}

Variable abstract_conv_grad_inputs(const ConvParams& params, const Variable& kernel,
                                   const Variable& topgrad, const ShapeDims& image_spatial,
                                   bool add_assert_shape) {
  Variable ker = kernel;
  if (add_assert_shape) {
    ker = assert_shape(ker, params.kshp,
                       "AbstractConv_gradInputs shape mismatch: shape of filters does not match "
                       "given kshp.");
  }
  const Variable shape = spatial_vector("gradInputs", image_spatial, params.convdim);
  return apply(std::make_shared<AbstractConv>(ConvDirection::grad_inputs, params),
               {ker, cast_like(topgrad, kernel), shape});
}

Variable abstract_conv_grad_weights(const ConvParams& params, const Variable& image,
                                    const Variable& topgrad, const ShapeDims& kernel_spatial,
                                    bool add_assert_shape) {
  Variable img = image;
  if (add_assert_shape) {
    img = assert_shape(img, params.imshp,
                       "AbstractConv_gradWeights shape mismatch: shape of image does not match "
                       "given imshp.");
  }
  const Variable shape = spatial_vector("gradWeights", kernel_spatial, params.convdim);
  return apply(std::make_shared<AbstractConv>(ConvDirection::grad_weights, params),
               {img, cast_like(topgrad, image), shape});
}

// ---- shape asserts ----

Variable assert_shape(const Variable& x, const StaticShape& expected, const std::string& message,
                      bool force) {
  if (expected.empty()) return x;
  if (!force && !global_config().get_bool("conv.assert_shape")) return x;
  std::vector<Variable> conditions;
  for (std::size_t i = 0; i < expected.size() && i < static_cast<std::size_t>(x.ndim()); ++i) {
    if (!expected[i]) continue;
    const StaticDim have = x.type().dims[i];
    if (have) {
      if (*have != *expected[i]) {
        throw ShapeError(fmt::format("{} ({} has static shape {}, expected {})", message, x.label(),
                                     x.type().str(), static_shape_str(expected)));
      }
      continue;
    }
    conditions.push_back(eq(shape_i(x, static_cast<int>(i)),
                            constant(static_cast<double>(*expected[i]), DType::int64)));
  }
  if (conditions.empty()) return x;
  return assert_op(x, conditions, message, AssertKind::shape);
}

ShapeDims assert_conv_shape(const ShapeDims& shape) {
  ShapeDims out;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    const Dim& d = shape[i];
    const bool spatial = i >= 2;
    if (d.is_constant()) {
      if (spatial ? d.value() <= 0 : d.value() < 0) {
        throw ValueError(
            fmt::format("The convolution would produce an invalid shape (dim[{}]: "
                        "{} {} 0).",
                        i, d.value(), spatial ? "<=" : "<"));
      }
      out.push_back(d);
    } else if (d.is_symbolic()) {
      const Variable zero = constant(0.0, d.variable().dtype());
      const Variable ok = spatial ? gt(d.variable(), zero) : ge(d.variable(), zero);
      out.emplace_back(assert_op(d.variable(), {ok},
                                 fmt::format("The convolution would produce an invalid shape "
                                             "(dim[{}] {} 0).",
                                             i, spatial ? "<=" : "<"),
                                 AssertKind::shape));
    } else {
      out.push_back(d);
    }
  }
  return out;
}

}  // namespace convgraph
