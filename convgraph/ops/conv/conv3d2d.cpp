#include "convgraph/ops/conv/conv3d2d.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>

#include "convgraph/base/error.hpp"
#include "convgraph/ops/conv/conv.hpp"
#include "convgraph/ops/tensor/alloc.hpp"
#include "convgraph/ops/tensor/join.hpp"
#include "convgraph/ops/tensor/reduce.hpp"
#include "convgraph/ops/tensor/reshape.hpp"
#include "convgraph/ops/tensor/shape.hpp"
#include "convgraph/runtime/strided.hpp"

namespace convgraph::conv3d2d {
namespace {

void check_axes(const char* who, int i0, int i1) {
  if (i0 < 0 || i1 < 0 || i0 == i1) {
    throw ValueError(
        fmt::format("{}: axes ({}, {}) are invalid; expected two distinct "
                    "non-negative axes",
                    who, i0, i1));
  }
}

void check_input_count(const Op& op, const std::vector<Variable>& inputs, std::size_t expected) {
  if (inputs.size() != expected) {
    throw ValueError(
        fmt::format("{}: expected {} input(s), got {}", op.str(), expected, inputs.size()));
  }
}

void check_rank_covers(const Op& op, const Variable& x, int i0, int i1) {
  if (x.ndim() <= std::max(i0, i1)) {
    throw TypeError(
        fmt::format("{}: {} has type {} (rank {}); the axes ({}, {}) need a rank of "
                    "at least {}",
                    op.str(), x.label(), x.type().str(), x.ndim(), i0, i1, std::max(i0, i1) + 1));
  }
}

// The static type of the diagonal view of a value of type X, after the checks that the static
// dims allow.
StaticShape diagonal_dims(const Op& op, const Variable& x, int i0, int i1) {
  StaticShape dims = x.type().dims;
  const StaticDim n0 = dims[static_cast<std::size_t>(i0)];
  const StaticDim n1 = dims[static_cast<std::size_t>(i1)];
  if (n1 && *n1 == 0) {
    throw ShapeError(
        fmt::format("{}: {} has type {}; axis {} is empty, so the diagonal view is "
                    "undefined",
                    op.str(), x.label(), x.type().str(), i1));
  }
  if (n0 && n1 && *n0 < *n1) {
    throw UnsupportedError(
        fmt::format("{}: {} has type {}; the diagonal view needs axis {} ({}) "
                    "at least as long as axis {} ({})",
                    op.str(), x.label(), x.type().str(), i0, *n0, i1, *n1));
  }
  dims[static_cast<std::size_t>(i0)] = n0 && n1 ? StaticDim(*n0 - *n1 + 1) : std::nullopt;
  return dims;
}

Variable zero_pad_axis(const Variable& x, int axis, const Dim& before, const Dim& after) {
  if (before.is_constant() && after.is_constant()) {
    std::vector<std::pair<std::int64_t, std::int64_t>> pads(static_cast<std::size_t>(x.ndim()),
                                                            {0, 0});
    pads[static_cast<std::size_t>(axis)] = {before.value(), after.value()};
    return pad(x, pads);
  }
  ShapeDims before_shape = shape_dims(x), after_shape = shape_dims(x);
  before_shape[static_cast<std::size_t>(axis)] = before;
  after_shape[static_cast<std::size_t>(axis)] = after;
  return concatenate({zeros(before_shape, x.dtype()), x, zeros(after_shape, x.dtype())}, axis);
}

int normalize_axis(const char* who, int axis, int rank) {
  const int a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) {
    throw ValueError(
        fmt::format("{}: axis {} is out of range for a tensor of rank {}", who, axis, rank));
  }
  return a;
}

}  // namespace

Tensor get_diagonal_subtensor_view(const Tensor& x, int i0, int i1) {
  constexpr const char* kWho = "get_diagonal_subtensor_view";
  const int a0 = normalize_axis(kWho, i0, x.rank());
  const int a1 = normalize_axis(kWho, i1, x.rank());
  if (a0 == a1) {
    throw ValueError(
        fmt::format("{}: axes {} and {} are the same axis; expected two distinct "
                    "axes",
                    kWho, i0, i1));
  }
  const auto u0 = static_cast<std::size_t>(a0), u1 = static_cast<std::size_t>(a1);
  const std::int64_t n0 = x.shape()[u0], n1 = x.shape()[u1];
  if (n1 == 0) {
    throw ShapeError(
        fmt::format("{}: axis {} of a tensor of shape {} is empty, so the diagonal "
                    "view is undefined",
                    kWho, a1, shape_str(x.shape())));
  }
  if (n0 < n1) {
    throw UnsupportedError(
        fmt::format("{}: a tensor of shape {} has axis {} ({}) shorter than "
                    "axis {} ({}); the diagonal view needs it at least as long",
                    kWho, shape_str(x.shape()), a0, n0, a1, n1));
  }
  Shape shape = x.shape();
  Strides strides = x.strides();
  shape[u0] = n0 - n1 + 1;
  // Moving one step along I1 moves one step back along I0: v[a, b] = x[a + n1 - 1 - b, b].
  strides[u1] = x.strides()[u1] - x.strides()[u0];
  return x.as_strided(shape, strides, x.offset() + (n1 - 1) * x.strides()[u0]);
}

// ---------------------------------------------------------------------------------------------
// DiagonalSubtensor

DiagonalSubtensor::DiagonalSubtensor(int i0, int i1, bool inplace)
    : i0_(i0), i1_(i1), inplace_(inplace) {
  check_axes("DiagonalSubtensor", i0, i1);
}

std::string DiagonalSubtensor::str() const {
  return fmt::format("DiagonalSubtensor{{{}, {}{}}}", i0_, i1_, inplace_ ? ", inplace" : "");
}

bool DiagonalSubtensor::equals(const Op& other) const {
  const auto* o = dynamic_cast<const DiagonalSubtensor*>(&other);
  return o != nullptr && o->i0_ == i0_ && o->i1_ == i1_ && o->inplace_ == inplace_;
}

std::size_t DiagonalSubtensor::hash() const {
  return hash_values(std::string("DiagonalSubtensor"), i0_, i1_, inplace_);
}

std::vector<TensorType> DiagonalSubtensor::make_outputs(const std::vector<Variable>& inputs) const {
  check_input_count(*this, inputs, 1);
  const Variable& x = inputs[0];
  check_rank_covers(*this, x, i0_, i1_);
  return {TensorType(x.dtype(), diagonal_dims(*this, x, i0_, i1_), x.type().device)};
}

std::vector<ShapeDims> DiagonalSubtensor::infer_shape(
    const Node& /*node*/, const std::vector<ShapeDims>& input_shapes) const {
  ShapeDims out = input_shapes.at(0);
  const auto u0 = static_cast<std::size_t>(i0_), u1 = static_cast<std::size_t>(i1_);
  out[u0] = out[u0] - out[u1] + Dim(1);
  return {out};
}

std::vector<Variable> DiagonalSubtensor::grad(const std::vector<Variable>& inputs,
                                              const std::vector<Variable>& /*outputs*/,
                                              const std::vector<Variable>& output_grads) const {
  return {inc_diagonal_subtensor(zeros_like(inputs[0]), i0_, i1_, output_grads[0])};
}

std::vector<Variable> DiagonalSubtensor::r_op(const std::vector<Variable>& /*inputs*/,
                                              const std::vector<Variable>& /*outputs*/,
                                              const std::vector<Variable>& eval_points) const {
  if (!eval_points[0].defined()) return {Variable()};
  return {diagonal_subtensor(eval_points[0], i0_, i1_)};
}

void DiagonalSubtensor::perform(const std::vector<Tensor>& inputs,
                                std::vector<Tensor>& outputs) const {
  const Tensor view = get_diagonal_subtensor_view(inputs.at(0), i0_, i1_);
  outputs.at(0) = inplace_ ? view : view.clone();
}

std::vector<std::pair<int, int>> DiagonalSubtensor::view_map() const {
  if (inplace_) return {{0, 0}};
  return {};
}

// ---------------------------------------------------------------------------------------------
// IncDiagonalSubtensor

IncDiagonalSubtensor::IncDiagonalSubtensor(int i0, int i1, bool inplace)
    : i0_(i0), i1_(i1), inplace_(inplace) {
  check_axes("IncDiagonalSubtensor", i0, i1);
}

std::string IncDiagonalSubtensor::str() const {
  return fmt::format("IncDiagonalSubtensor{{{}, {}{}}}", i0_, i1_, inplace_ ? ", inplace" : "");
}

bool IncDiagonalSubtensor::equals(const Op& other) const {
  const auto* o = dynamic_cast<const IncDiagonalSubtensor*>(&other);
  return o != nullptr && o->i0_ == i0_ && o->i1_ == i1_ && o->inplace_ == inplace_;
}

std::size_t IncDiagonalSubtensor::hash() const {
  return hash_values(std::string("IncDiagonalSubtensor"), i0_, i1_, inplace_);
}

std::vector<TensorType> IncDiagonalSubtensor::make_outputs(
    const std::vector<Variable>& inputs) const {
  check_input_count(*this, inputs, 2);
  const Variable& x = inputs[0];
  const Variable& amt = inputs[1];
  check_rank_covers(*this, x, i0_, i1_);
  if (amt.ndim() != x.ndim()) {
    throw TypeError(
        fmt::format("{}: the increment {} has type {} (rank {}); expected the rank "
                    "of {} ({})",
                    str(), amt.label(), amt.type().str(), amt.ndim(), x.label(), x.ndim()));
  }
  if (amt.dtype() != x.dtype()) {
    throw TypeError(fmt::format("{}: the increment {} has dtype {}; expected the dtype of {} ({})",
                                str(), amt.label(), dtype_name(amt.dtype()), x.label(),
                                dtype_name(x.dtype())));
  }
  const StaticShape view = diagonal_dims(*this, x, i0_, i1_);
  for (std::size_t a = 0; a < view.size(); ++a) {
    const StaticDim d = amt.type().dims[a];
    if (view[a] && d && *view[a] != *d) {
      throw ShapeError(
          fmt::format("{}: the increment {} has type {}; it must have the shape of "
                      "the diagonal view of {}, {}",
                      str(), amt.label(), amt.type().str(), x.label(), static_shape_str(view)));
    }
  }
  return {x.type()};
}

std::vector<ShapeDims> IncDiagonalSubtensor::infer_shape(
    const Node& /*node*/, const std::vector<ShapeDims>& input_shapes) const {
  return {input_shapes.at(0)};
}

std::vector<Variable> IncDiagonalSubtensor::grad(const std::vector<Variable>& /*inputs*/,
                                                 const std::vector<Variable>& /*outputs*/,
                                                 const std::vector<Variable>& output_grads) const {
  const Variable& gy = output_grads[0];
  return {gy, diagonal_subtensor(gy, i0_, i1_)};
}

std::vector<Variable> IncDiagonalSubtensor::r_op(const std::vector<Variable>& inputs,
                                                 const std::vector<Variable>& /*outputs*/,
                                                 const std::vector<Variable>& eval_points) const {
  const Variable& ex = eval_points[0];
  const Variable& eamt = eval_points[1];
  if (!eamt.defined()) return {ex};
  return {inc_diagonal_subtensor(ex.defined() ? ex : zeros_like(inputs[0]), i0_, i1_, eamt)};
}

void IncDiagonalSubtensor::perform(const std::vector<Tensor>& inputs,
                                   std::vector<Tensor>& outputs) const {
  const Tensor& x = inputs.at(0);
  const Tensor& amt = inputs.at(1);
  if (amt.dtype() != x.dtype()) {
    throw TypeError(fmt::format("{}: the increment has dtype {}; expected {}", str(),
                                dtype_name(amt.dtype()), dtype_name(x.dtype())));
  }
  // Validate against a view of the input first, so that nothing is allocated or written for a
  // bad increment.
  const Shape view_shape = get_diagonal_subtensor_view(x, i0_, i1_).shape();
  if (amt.shape() != view_shape) {
    throw ShapeError(
        fmt::format("{}: the increment has shape {}; it must have the shape of the "
                    "diagonal view of an input of shape {}, {}",
                    str(), shape_str(amt.shape()), shape_str(x.shape()), shape_str(view_shape)));
  }
  Tensor out = x.clone();
  const Tensor view = get_diagonal_subtensor_view(out, i0_, i1_);
  dispatch_dtype(x.dtype(), [&]<typename T>() {
    T* dst = view.data<T>();
    const T* src = amt.data<T>();
    for_each_run<2>(view.shape(), {&view.strides(), &amt.strides()},
                    [&](const std::array<std::int64_t, 2>& offsets, std::int64_t count,
                        const std::array<std::int64_t, 2>& inner) {
                      T* d = dst + offsets[0];
                      const T* s = src + offsets[1];
                      for (std::int64_t i = 0; i < count; ++i) {
                        T& target = d[i * inner[0]];
                        target = convert<T>(convert<compute_t<T>>(target) +
                                            convert<compute_t<T>>(s[i * inner[1]]));
                      }
                    });
  });
  outputs.at(0) = out;
}

// ---------------------------------------------------------------------------------------------

Variable diagonal_subtensor(const Variable& x, int i0, int i1) {
  const int rank = x.ndim();
  return apply(std::make_shared<DiagonalSubtensor>(normalize_axis("diagonal_subtensor", i0, rank),
                                                   normalize_axis("diagonal_subtensor", i1, rank)),
               {x});
}

Variable inc_diagonal_subtensor(const Variable& x, int i0, int i1, const Variable& amt) {
  const int rank = x.ndim();
  return apply(
      std::make_shared<IncDiagonalSubtensor>(normalize_axis("inc_diagonal_subtensor", i0, rank),
                                             normalize_axis("inc_diagonal_subtensor", i1, rank)),
      {x, amt});
}

// ---------------------------------------------------------------------------------------------

namespace {

enum class AxisMode { valid, full, half };

AxisMode parse_mode(const std::vector<std::string>& modes, std::size_t axis) {
  static constexpr std::array<const char*, 3> kAxisNames{"time", "height", "width"};
  const std::string& m = modes[axis];
  if (m == "valid") return AxisMode::valid;
  if (m == "full") return AxisMode::full;
  if (m == "half") return AxisMode::half;
  if (m == "same") {
    throw UnsupportedError(
        fmt::format("conv3d2d.conv3d: border_mode '{}' ({} axis) is not "
                    "implemented; use \"valid\", \"full\" or \"half\"",
                    m, kAxisNames[axis]));
  }
  throw ValueError(
      fmt::format("conv3d2d.conv3d: invalid border_mode '{}' for the {} axis; "
                  "expected \"valid\", \"full\" or \"half\"",
                  m, kAxisNames[axis]));
}

// The known size of axis AXIS: from the hint where it has one, else from the type, else
// symbolic.
Dim dim_at(const Variable& x, const StaticShape& hint, int axis) {
  const auto a = static_cast<std::size_t>(axis);
  if (!hint.empty() && hint[a]) return Dim(*hint[a]);
  return shape_dims(x)[a];
}

StaticDim product(const StaticDim& a, const StaticDim& b) {
  return a && b ? StaticDim(*a * *b) : std::nullopt;
}

// The output size of one spatial axis of the 2-D step.
Dim spatial_out(AxisMode mode, const Dim& image, const Dim& kernel) {
  switch (mode) {
    case AxisMode::valid:
      return image - kernel + Dim(1);
    case AxisMode::full:
      return image + kernel - Dim(1);
    case AxisMode::half:
      return image + Dim(2) * floor_div(kernel, Dim(2)) - kernel + Dim(1);
  }
  return Dim::unknown();
}

}  // namespace

Variable conv3d(const Variable& signals, const Variable& filters, const Conv3d2dOptions& options) {
  constexpr const char* kWho = "conv3d2d.conv3d";
  if (signals.ndim() != 5) {
    throw TypeError(
        fmt::format("{}: signals ({}) has type {} (rank {}); expected a 5-D tensor "
                    "(batch, time, channels, height, width)",
                    kWho, signals.label(), signals.type().str(), signals.ndim()));
  }
  if (filters.ndim() != 5) {
    throw TypeError(
        fmt::format("{}: filters ({}) has type {} (rank {}); expected a 5-D tensor "
                    "(filters, time, channels, height, width)",
                    kWho, filters.label(), filters.type().str(), filters.ndim()));
  }
  for (const auto& [hint, name] : {std::pair{&options.signals_shape, "signals_shape"},
                                   std::pair{&options.filters_shape, "filters_shape"}}) {
    if (!hint->empty() && hint->size() != 5) {
      throw ValueError(fmt::format("{}: {} {} has {} entries; expected 5 or none", kWho, name,
                                   static_shape_str(*hint), hint->size()));
    }
  }
  const std::vector<std::string>& modes = options.border_mode.modes();
  if (modes.size() != 3) {
    throw ValueError(
        fmt::format("{}: border_mode has {} entries ({}); expected one mode, or "
                    "three (time, height, width)",
                    kWho, modes.size(), fmt::join(modes, ", ")));
  }
  const AxisMode time_mode = parse_mode(modes, 0);
  const AxisMode height_mode = parse_mode(modes, 1);
  parse_mode(modes, 2);
  if (modes[1] != modes[2]) {
    throw UnsupportedError(
        fmt::format("{}: the height and width border modes must match; got "
                    "'{}' and '{}'",
                    kWho, modes[1], modes[2]));
  }

  const Dim ns = dim_at(signals, options.signals_shape, 0);
  const Dim ts = dim_at(signals, options.signals_shape, 1);
  const Dim c = dim_at(signals, options.signals_shape, 2);
  const Dim hs = dim_at(signals, options.signals_shape, 3);
  const Dim ws = dim_at(signals, options.signals_shape, 4);
  const Dim nf = dim_at(filters, options.filters_shape, 0);
  const Dim tf = dim_at(filters, options.filters_shape, 1);
  const Dim cf = dim_at(filters, options.filters_shape, 2);
  const Dim hf = dim_at(filters, options.filters_shape, 3);
  const Dim wf = dim_at(filters, options.filters_shape, 4);
  if (c.is_constant() && cf.is_constant() && c.value() != cf.value()) {
    throw ShapeError(fmt::format("{}: signals have {} channels (axis 2) but filters have {}", kWho,
                                 c.value(), cf.value()));
  }
  Dim time_pad(0);
  if (time_mode == AxisMode::full) time_pad = tf - Dim(1);
  if (time_mode == AxisMode::half) time_pad = floor_div(tf, Dim(2));
  const Dim padded_time = ts + Dim(2) * time_pad;
  if (padded_time.is_constant() && tf.is_constant() && padded_time.value() < tf.value()) {
    throw ShapeError(
        fmt::format("{}: {} signal frames (padded to {} by border_mode '{}') are "
                    "fewer than the {} filter frames",
                    kWho, ts.str(), padded_time.value(), modes[0], tf.value()));
  }

  StaticShape signals_4d, filters_4d;
  if (!options.signals_shape.empty()) {
    const StaticShape& s = options.signals_shape;
    signals_4d = {product(s[0], s[1]), s[2], s[3], s[4]};
  }
  if (!options.filters_shape.empty()) {
    const StaticShape& f = options.filters_shape;
    filters_4d = {product(f[0], f[1]), f[2], f[3], f[4]};
  }
  const Variable frames = convgraph::conv2d(
      reshape(signals, ShapeDims{ns * ts, c, hs, ws}),
      reshape(filters, ShapeDims{nf * tf, cf, hf, wf}),
      ConvOptions{.input_shape = signals_4d, .filter_shape = filters_4d, .border_mode = modes[1]});
  const Dim hout = spatial_out(height_mode, hs, hf);
  const Dim wout = spatial_out(height_mode, ws, wf);
  if (tf.is_constant() && tf.value() == 1) {
    return reshape(frames, ShapeDims{ns, ts, nf, hout, wout});
  }
  Variable pairs = reshape(frames, ShapeDims{ns, ts, nf, tf, hout, wout});
  if (!(time_pad.is_constant() && time_pad.value() == 0)) {
    pairs = zero_pad_axis(pairs, 1, time_pad, time_pad);
  }
  return sum(diagonal_subtensor(pairs, 1, 3), {3});
}

}  // namespace convgraph::conv3d2d
