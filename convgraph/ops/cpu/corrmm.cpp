#include "convgraph/ops/cpu/corrmm.hpp"

#include "convgraph/ops/conv/conv_checks.hpp"

#include <fmt/format.h>

#include <optional>
#include <utility>

#include "convgraph/base/error.hpp"
#include "convgraph/ops/cpu/im2col.hpp"

namespace convgraph {
namespace {

// ---- run-time checks: the reference's (reference_conv.cpp), in the same order, with the op's
// name in the messages ----

std::string op_name(ConvDirection direction, int convdim) {
  std::string name = convdim == 3 ? "Corr3dMM" : "CorrMM";
  if (direction == ConvDirection::grad_inputs) name += "_gradInputs";
  if (direction == ConvDirection::grad_weights) name += "_gradWeights";
  return name;
}

void check_tensor(const std::string& fn, const char* what, const Tensor& t, int rank) {
  if (!t.defined()) throw ValueError(fmt::format("{}: the {} is an undefined tensor", fn, what));
  if (!t.device().is_cpu()) {
    throw UnsupportedError(
        fmt::format("{}: the {} is on {}; CorrMM runs on the cpu", fn, what, t.device().str()));
  }
  if (!is_float(t.dtype())) {
    throw TypeError(fmt::format("{}: the {} has dtype {}; expected float32 or float64", fn, what,
                                dtype_name(t.dtype())));
  }
  if (t.rank() != rank) {
    throw TypeError(fmt::format("{}: the {} has shape {} (rank {}); expected rank {}", fn, what,
                                shape_str(t.shape()), t.rank(), rank));
  }
}

void check_dtypes(const std::string& fn, const char* what_a, const Tensor& a, const char* what_b,
                  const Tensor& b) {
  if (a.dtype() != b.dtype()) {
    throw TypeError(
        fmt::format("{}: the {} has dtype {} but the {} has dtype {}; expected the same dtype", fn,
                    what_a, dtype_name(a.dtype()), what_b, dtype_name(b.dtype())));
  }
  // Half precision has no BLAS GEMM on the CPU; the lowering pass declines it before this.
  if (a.dtype() == DType::float16) {
    throw UnsupportedError(fmt::format(
        "{}: CorrMM does not support float16 on the CPU (the {} is float16)", fn, what_a));
  }
}

Shape last_axes(const Shape& shape, int count) {
  return Shape(shape.end() - count, shape.end());
}

Shape spatial_shape(const CorrAxes& axes, int convdim) {
  return Shape(axes.end() - convdim, axes.end());
}

void set_spatial(CorrGeometry& geo, const ConvParams& p, const Shape& image_spatial,
                 const Shape& kernel_spatial) {
  geo.flip = p.filter_flip;
  geo.unshared = p.unshared;
  geo.groups = p.num_groups;
  const int n = p.convdim;
  for (int a = 0; a < n; ++a) {
    const auto i = static_cast<std::size_t>(a);
    const auto j = static_cast<std::size_t>(3 - n + a);
    geo.image[j] = image_spatial[i];
    geo.kernel[j] = kernel_spatial[i];
    geo.stride[j] = p.subsample[i];
    geo.dilation[j] = p.dilation[i];
    const std::int64_t dilated = (kernel_spatial[i] - 1) * p.dilation[i] + 1;
    const auto [before, after] = p.border[i].resolve(dilated);
    geo.pad_before[j] = before;
    geo.pad_after[j] = after;
    geo.output[j] = floor_div_int(image_spatial[i] + before + after - dilated, p.subsample[i]) + 1;
  }
}

void check_output_possible(const std::string& fn, const CorrGeometry& geo, const ConvParams& p,
                           const Shape& image, const Shape& kernel) {
  for (std::int64_t o : geo.output) {
    if (o < 1) {
      throw ShapeError(fmt::format(
          "{}: the convolution would produce an impossible output of spatial size {} "
          "({}); every spatial size must be at least 1",
          fn, shape_str(spatial_shape(geo.output, p.convdim)), describe_conv(p, image, kernel)));
    }
  }
}

void set_channels(const std::string& fn, CorrGeometry& geo, std::int64_t channels,
                  std::int64_t filters, std::int64_t kernel_channels, const char* source) {
  const std::int64_t g = geo.groups;
  if (channels % g != 0) {
    throw ShapeError(
        fmt::format("{}: the {} has {} channels, which is not divisible by num_groups={}", fn,
                    source, channels, g));
  }
  if (filters % g != 0) {
    throw ShapeError(fmt::format(
        "{}: there are {} filters, which is not divisible by num_groups={}", fn, filters, g));
  }
  if (channels / g != kernel_channels) {
    throw ShapeError(
        fmt::format("{}: the kernel has {} input channels, but the {} has {} channels in {} "
                    "group(s), so each group needs {}",
                    fn, kernel_channels, source, channels, g, channels / g));
  }
  geo.channels = channels;
  geo.filters = filters;
  geo.channels_per_group = channels / g;
  geo.filters_per_group = filters / g;
}

void check_unshared_regions(const std::string& fn, const CorrGeometry& geo, const ConvParams& p,
                            const Shape& kernel) {
  if (!p.unshared) return;
  const Shape regions(kernel.begin() + 1, kernel.begin() + 1 + p.convdim);
  const Shape output = spatial_shape(geo.output, p.convdim);
  if (regions != output) {
    throw ShapeError(
        fmt::format("{}: the unshared kernel of shape {} has a region grid of {}, but the output "
                    "grid is {}; they must be equal",
                    fn, shape_str(kernel), shape_str(regions), shape_str(output)));
  }
}

Shape output_shape(const CorrGeometry& geo, int convdim) {
  Shape out{geo.batch, geo.filters};
  for (std::int64_t o : spatial_shape(geo.output, convdim)) out.push_back(o);
  return out;
}

// What a call needs besides the data: the geometry (tap tables included) and the result's shape.
struct Prepared {
  CorrGeometry geo;
  Shape result;
};

// The shape checks of each direction on the shapes of its two tensor inputs (A, B) and its
// spatial argument. The tensor checks (rank, dtype, device) come first, in check_inputs.
Prepared prepare(const std::string& fn, ConvDirection direction, const ConvParams& p,
                 const Shape& a, const Shape& b, const Shape& spatial) {
  const int n = p.convdim;
  Prepared out;
  CorrGeometry& geo = out.geo;
  switch (direction) {
    case ConvDirection::forward: {
      const Shape kernel_spatial = last_axes(b, n);
      check_conv_spatial_argument(fn, "the kernel's spatial shape", kernel_spatial, n, 1);
      set_spatial(geo, p, last_axes(a, n), kernel_spatial);
      geo.batch = a[0];
      set_channels(fn, geo, a[1], b[0], b[b.size() - static_cast<std::size_t>(n) - 1], "image");
      check_output_possible(fn, geo, p, a, b);
      check_unshared_regions(fn, geo, p, b);
      out.result = output_shape(geo, n);
      break;
    }
    case ConvDirection::grad_inputs: {
      check_conv_spatial_argument(fn, "input_shape (the image's spatial shape)", spatial, n, 0);
      const Shape kernel_spatial = last_axes(a, n);
      check_conv_spatial_argument(fn, "the kernel's spatial shape", kernel_spatial, n, 1);
      const std::int64_t kernel_channels = a[a.size() - static_cast<std::size_t>(n) - 1];
      Shape image_shape{b[0], kernel_channels * p.num_groups};
      image_shape.insert(image_shape.end(), spatial.begin(), spatial.end());
      set_spatial(geo, p, spatial, kernel_spatial);
      geo.batch = b[0];
      set_channels(fn, geo, image_shape[1], a[0], kernel_channels, "image gradient");
      check_output_possible(fn, geo, p, image_shape, a);
      const Shape expected = output_shape(geo, n);
      if (expected != b) {
        throw ShapeError(fmt::format(
            "{}: invalid input_shape for gradInputs: the given input_shape would produce an "
            "output of shape {}, but the given topgrad has shape {} (input_shape {}, {})",
            fn, shape_str(expected), shape_str(b), shape_str(spatial),
            describe_conv(p, image_shape, a)));
      }
      check_unshared_regions(fn, geo, p, a);
      out.result = image_shape;
      break;
    }
    case ConvDirection::grad_weights: {
      check_conv_spatial_argument(fn, "filter_shape (the kernel's spatial shape)", spatial, n, 1);
      set_spatial(geo, p, last_axes(a, n), spatial);
      geo.batch = a[0];
      set_channels(fn, geo, a[1], b[1], a[1] / p.num_groups, "image");
      Shape kernel_shape{geo.filters};
      if (p.unshared) {
        for (std::int64_t o : spatial_shape(geo.output, n)) kernel_shape.push_back(o);
      }
      kernel_shape.push_back(geo.channels_per_group);
      kernel_shape.insert(kernel_shape.end(), spatial.begin(), spatial.end());
      check_output_possible(fn, geo, p, a, kernel_shape);
      const Shape expected = output_shape(geo, n);
      if (expected != b) {
        throw ShapeError(fmt::format(
            "{}: invalid filter_shape for gradWeights: the given filter_shape would produce an "
            "output of shape {}, but the given topgrad has shape {} (filter_shape {}, {})",
            fn, shape_str(expected), shape_str(b), shape_str(spatial),
            describe_conv(p, a, kernel_shape)));
      }
      out.result = kernel_shape;
      break;
    }
  }
  set_tap_tables(geo);
  return out;
}

// The op-level checks of AbstractConv::perform, in its order (before the shape checks): the imshp
// / kshp hints against the inputs and against the shape the result will have.
void check_hints(const std::string& fn, ConvDirection direction, const ConvParams& p,
                 const Shape& a, const Shape& b, const Shape& spatial) {
  auto check = [&](const Shape& shape, const StaticShape& hint, const char* what,
                   const char* hint_name) {
    for (std::size_t i = 0; i < hint.size() && i < shape.size(); ++i) {
      if (hint[i] && *hint[i] != shape[i]) {
        throw ShapeError(
            fmt::format("{}: the {} has shape {}, which does not match the given {} {}", fn, what,
                        shape_str(shape), hint_name, static_shape_str(hint)));
      }
    }
  };
  const auto n = static_cast<std::size_t>(p.convdim);
  switch (direction) {
    case ConvDirection::forward:
      check(a, p.imshp, "image", "imshp");
      check(b, p.kshp, "kernel", "kshp");
      break;
    case ConvDirection::grad_inputs: {
      check(a, p.kshp, "kernel", "kshp");
      Shape result{b[0], a[a.size() - n - 1] * p.num_groups};
      result.insert(result.end(), spatial.begin(), spatial.end());
      check(result, p.imshp, "image gradient", "imshp");
      break;
    }
    case ConvDirection::grad_weights: {
      check(a, p.imshp, "image", "imshp");
      Shape result{b[1]};
      if (p.unshared) result.insert(result.end(), b.begin() + 2, b.end());
      result.push_back(a[1] / p.num_groups);
      result.insert(result.end(), spatial.begin(), spatial.end());
      check(result, p.kshp, "kernel gradient", "kshp");
      break;
    }
  }
}

const char* first_input_name(ConvDirection direction) {
  return direction == ConvDirection::grad_inputs ? "kernel" : "image";
}
const char* second_input_name(ConvDirection direction) {
  return direction == ConvDirection::forward ? "kernel" : "topgrad";
}

void check_inputs(const std::string& fn, ConvDirection direction, const ConvParams& p,
                  const Tensor& a, const Tensor& b) {
  check_conv_params(fn, p);
  const char* name_a = first_input_name(direction);
  const char* name_b = second_input_name(direction);
  check_tensor(fn, name_a, a,
               direction == ConvDirection::grad_inputs ? p.kernel_rank() : p.image_rank());
  check_tensor(fn, name_b, b,
               direction == ConvDirection::forward ? p.kernel_rank() : p.image_rank());
  check_dtypes(fn, name_a, a, name_b, b);
}

// Runs a prepared problem. Empty problems (no batch, channels or filters) give zeros, like the
// reference; everything else goes to the GEMM drivers on contiguous data.
Tensor execute(ConvDirection direction, const Prepared& prep, const Tensor& a, const Tensor& b) {
  const CorrGeometry& geo = prep.geo;
  const DType dtype = a.dtype();
  if (geo.batch == 0 || geo.channels == 0 || geo.filters == 0) {
    return Tensor::zeros(dtype, prep.result);
  }
  Tensor out = Tensor::empty(dtype, prep.result);
  if (out.numel() == 0) return out;
  const Tensor ca = a.contiguous();
  const Tensor cb = b.contiguous();
  auto run = [&]<typename T>() {
    switch (direction) {
      case ConvDirection::forward:
        corr_gemm_forward<T>(geo, ca.data<T>(), cb.data<T>(), out.data<T>());
        break;
      case ConvDirection::grad_inputs:
        corr_gemm_grad_inputs<T>(geo, ca.data<T>(), cb.data<T>(), out.data<T>());
        break;
      case ConvDirection::grad_weights:
        corr_gemm_grad_weights<T>(geo, ca.data<T>(), cb.data<T>(), out.data<T>());
        break;
    }
  };
  if (dtype == DType::float32) {
    run.operator()<float>();
  } else {
    run.operator()<double>();
  }
  return out;
}

Tensor run_direction(ConvDirection direction, const ConvParams& params, const Tensor& a,
                     const Tensor& b, const Shape& spatial) {
  const std::string fn = op_name(direction, params.convdim);
  check_inputs(fn, direction, params, a, b);
  return execute(direction, prepare(fn, direction, params, a.shape(), b.shape(), spatial), a, b);
}

// The spatial argument of the grad directions (the shape input).
Shape spatial_argument(ConvDirection direction, const std::vector<Tensor>& inputs) {
  if (direction == ConvDirection::forward) return {};
  return inputs[2].to_vector<std::int64_t>();
}

// The kernel of a CorrMM node: the geometry of the node's static shapes, when they are all known,
// is worked out once; calls with other shapes (or when they were not known) work theirs out.
class CorrMMKernel final : public Kernel {
 public:
  CorrMMKernel(std::string name, ConvDirection direction, ConvParams params)
      : name_(std::move(name)), direction_(direction), params_(std::move(params)) {}

  // Prepares for these input shapes now; on any error, leaves it to run time to report.
  void precompute(DType dtype, const Shape& a, const Shape& b, const Shape& spatial) {
    try {
      check_conv_params(name_, params_);
      check_hints(name_, direction_, params_, a, b, spatial);
      Prepared prep = prepare(name_, direction_, params_, a, b, spatial);
      cached_ = Cached{dtype, a, b, spatial, std::move(prep)};
    } catch (const ConvGraphError&) {
      cached_.reset();
    }
  }

  void run(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override {
    check_input_count(name_, direction_, inputs);
    const Tensor& a = inputs[0];
    const Tensor& b = inputs[1];
    check_inputs(name_, direction_, params_, a, b);
    const Shape spatial = spatial_argument(direction_, inputs);
    if (cached_ && cached_->dtype == a.dtype() && cached_->a == a.shape() &&
        cached_->b == b.shape() && cached_->spatial == spatial) {
      outputs.at(0) = execute(direction_, cached_->prep, a, b);
      return;
    }
    check_hints(name_, direction_, params_, a.shape(), b.shape(), spatial);
    const Prepared prep = prepare(name_, direction_, params_, a.shape(), b.shape(), spatial);
    outputs.at(0) = execute(direction_, prep, a, b);
  }

  std::string name() const override { return name_; }

  static void check_input_count(const std::string& fn, ConvDirection direction,
                                const std::vector<Tensor>& inputs) {
    const std::size_t expected = direction == ConvDirection::forward ? 2 : 3;
    if (inputs.size() != expected) {
      throw ValueError(
          fmt::format("{}: {} inputs given, expected {}", fn, inputs.size(), expected));
    }
  }

 private:
  struct Cached {
    DType dtype;
    Shape a, b, spatial;
    Prepared prep;
  };
  std::string name_;
  ConvDirection direction_;
  ConvParams params_;
  std::optional<Cached> cached_;
};

// The shape of a static type, when every dim is known.
std::optional<Shape> static_shape(const TensorType& type) {
  Shape shape;
  for (const StaticDim& d : type.dims) {
    if (!d) return std::nullopt;
    shape.push_back(*d);
  }
  return shape;
}

}  // namespace

CorrMM::CorrMM(ConvDirection direction, ConvParams params)
    : direction_(direction),
      params_(params),
      abstract_(std::make_shared<const AbstractConv>(direction, std::move(params))) {}

std::string CorrMM::name() const {
  return op_name(direction_, params_.convdim);
}

std::string CorrMM::str() const {
  return fmt::format("{}{{{}}}", name(), params_.str());
}

bool CorrMM::equals(const Op& other) const {
  const auto* o = dynamic_cast<const CorrMM*>(&other);
  return o != nullptr && o->direction_ == direction_ && o->params_ == params_;
}

std::size_t CorrMM::hash() const {
  return hash_combine(params_.hash(), static_cast<std::size_t>(direction_) + 0xc044);
}

std::vector<TensorType> CorrMM::make_outputs(const std::vector<Variable>& inputs) const {
  for (std::size_t i = 0; i < inputs.size() && i < 2; ++i) {
    if (inputs[i].dtype() == DType::float16) {
      throw UnsupportedError(
          fmt::format("{}: CorrMM does not support float16 on the CPU (input {} is float16)", str(),
                      inputs[i].label()));
    }
    if (!inputs[i].type().device.is_cpu()) {
      throw UnsupportedError(fmt::format("{}: input {} is on {}; CorrMM runs on the cpu", str(),
                                         inputs[i].label(), inputs[i].type().device.str()));
    }
  }
  return abstract_->make_outputs(inputs);
}

std::vector<ShapeDims> CorrMM::infer_shape(const Node& node,
                                           const std::vector<ShapeDims>& input_shapes) const {
  return abstract_->infer_shape(node, input_shapes);
}

std::vector<Variable> CorrMM::grad(const std::vector<Variable>& inputs,
                                   const std::vector<Variable>& outputs,
                                   const std::vector<Variable>& output_grads) const {
  return abstract_->grad(inputs, outputs, output_grads);
}

std::vector<Variable> CorrMM::r_op(const std::vector<Variable>& inputs,
                                   const std::vector<Variable>& outputs,
                                   const std::vector<Variable>& eval_points) const {
  return abstract_->r_op(inputs, outputs, eval_points);
}

std::shared_ptr<const Op> CorrMM::reference_op() const {
  return abstract_;
}

void CorrMM::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  CorrMMKernel(str(), direction_, params_).run(inputs, outputs);
}

std::shared_ptr<const Kernel> CorrMM::make_kernel(const Node& node) const {
  auto kernel = std::make_shared<CorrMMKernel>(str(), direction_, params_);
  if (node.inputs.size() < 2) return kernel;
  const std::optional<Shape> a = static_shape(node.inputs[0].type());
  const std::optional<Shape> b = static_shape(node.inputs[1].type());
  std::optional<Shape> spatial = Shape{};
  if (direction_ != ConvDirection::forward) {
    spatial.reset();
    if (node.inputs.size() == 3 && node.inputs[2].is_constant()) {
      spatial = node.inputs[2].constant_value().to_vector<std::int64_t>();
    }
  }
  if (a && b && spatial) kernel->precompute(node.inputs[0].dtype(), *a, *b, *spatial);
  return kernel;
}

Tensor corrmm_forward(const ConvParams& params, const Tensor& image, const Tensor& kernel) {
  return run_direction(ConvDirection::forward, params, image, kernel, {});
}

Tensor corrmm_grad_inputs(const ConvParams& params, const Tensor& kernel, const Tensor& topgrad,
                          const Shape& image_spatial) {
  return run_direction(ConvDirection::grad_inputs, params, kernel, topgrad, image_spatial);
}

Tensor corrmm_grad_weights(const ConvParams& params, const Tensor& image, const Tensor& topgrad,
                           const Shape& kernel_spatial) {
  return run_direction(ConvDirection::grad_weights, params, image, topgrad, kernel_spatial);
}

}  // namespace convgraph
