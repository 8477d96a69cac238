#include "convgraph/ops/tensor/alloc.hpp"

#include <fmt/format.h>

#include <cmath>

#include "convgraph/ops/tensor/reduce.hpp"
#include "convgraph/ops/tensor/shape.hpp"
#include "convgraph/runtime/step_memory.hpp"

namespace convgraph {
namespace {

std::vector<bool> static_ones(const TensorType& t) {
  std::vector<bool> mask;
  for (const auto& d : t.dims) mask.push_back(d == StaticDim{1});
  return mask;
}

// The number of elements of arange(start, stop, step); numpy's rule, with step 0 refused.
std::int64_t arange_length(const Op& op, const Tensor& start, const Tensor& stop,
                           const Tensor& step) {
  const bool integral =
      !is_float(start.dtype()) && !is_float(stop.dtype()) && !is_float(step.dtype());
  if (integral) {
    const auto a = start.item<std::int64_t>();
    const auto b = stop.item<std::int64_t>();
    const auto s = step.item<std::int64_t>();
    if (s == 0) throw ValueError(fmt::format("{}: step cannot be zero", op.str()));
    std::int64_t span;
    if (__builtin_sub_overflow(b, a, &span)) {
      throw ValueError(fmt::format("{}: stop - start overflows int64 ({} - {})", op.str(), b, a));
    }
    // ceil(span / s) with integer arithmetic: -floor(-span / s).
    std::int64_t q = span / s;
    if (span % s != 0 && ((span < 0) == (s < 0))) ++q;
    return std::max<std::int64_t>(q, 0);
  }
  const double a = start.item<double>();
  const double b = stop.item<double>();
  const double s = step.item<double>();
  if (s == 0.0) throw ValueError(fmt::format("{}: step cannot be zero", op.str()));
  const double n = std::ceil((b - a) / s);
  if (!std::isfinite(n) || n > 9.0e18) {
    throw ValueError(
        fmt::format("{}: arange({}, {}, {}) does not have a finite length", op.str(), a, b, s));
  }
  return std::max<std::int64_t>(static_cast<std::int64_t>(n), 0);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Alloc

Alloc::Alloc(std::vector<bool> value_broadcastable)
    : value_broadcastable_(std::move(value_broadcastable)) {}

bool Alloc::equals(const Op& other) const {
  const auto* o = dynamic_cast<const Alloc*>(&other);
  return o != nullptr && o->value_broadcastable_ == value_broadcastable_;
}
std::size_t Alloc::hash() const {
  std::size_t seed = std::hash<std::string>{}("Alloc");
  for (bool b : value_broadcastable_) seed = hash_combine(seed, std::hash<bool>{}(b));
  return seed;
}

std::vector<TensorType> Alloc::make_outputs(const std::vector<Variable>& inputs) const {
  if (inputs.empty()) throw ValueError(fmt::format("{}: no value given", str()));
  const Variable& value = inputs[0];
  const TensorType& vt = value.type();
  const std::size_t rank = inputs.size() - 1;
  if (value_broadcastable_.size() != vt.dims.size()) {
    throw ValueError(fmt::format("{}: built for a value of rank {}, but the value ({}) has type {}",
                                 str(), value_broadcastable_.size(), value.label(), vt.str()));
  }
  if (vt.dims.size() > rank) {
    throw ShapeError(
        fmt::format("{}: the value ({}) of type {} has more axes than the {} dims given", str(),
                    value.label(), vt.str(), rank));
  }
  StaticShape out(rank);
  for (std::size_t i = 0; i < rank; ++i) {
    const Variable& d = inputs[i + 1];
    if (d.ndim() != 0 || !is_integer(d.dtype())) {
      throw TypeError(fmt::format("{}: dim {} ({}) has type {}, expected an integer scalar", str(),
                                  i, d.label(), d.type().str()));
    }
    if (d.is_constant()) {
      const auto v = d.constant_value().item<std::int64_t>();
      if (v < 0)
        throw ValueError(fmt::format("{}: dim {} is {}, must be non-negative", str(), i, v));
      out[i] = v;
    }
  }
  const std::size_t offset = rank - vt.dims.size();
  for (std::size_t j = 0; j < vt.dims.size(); ++j) {
    const StaticDim vd = vt.dims[j];
    if (value_broadcastable_[j]) {
      if (vd != StaticDim{1}) {
        throw ValueError(
            fmt::format("{}: the value's axis {} is marked broadcastable but the value "
                        "({}) has type {}",
                        str(), j, value.label(), vt.str()));
      }
      continue;
    }
    StaticDim& od = out[j + offset];
    if (vd && od && *vd != *od) {
      throw ShapeError(fmt::format("{}: cannot broadcast the value ({}) of type {} to the shape {}",
                                   str(), value.label(), vt.str(), static_shape_str(out)));
    }
    if (vd) od = vd;
  }
  return {TensorType(vt.dtype, std::move(out), vt.device)};
}

std::vector<ShapeDims> Alloc::infer_shape(const Node& node,
                                          const std::vector<ShapeDims>& /*input_shapes*/) const {
  ShapeDims out;
  for (std::size_t i = 1; i < node.inputs.size(); ++i) out.push_back(Dim(node.inputs[i]));
  return {out};
}

std::vector<Variable> Alloc::grad(const std::vector<Variable>& inputs,
                                  const std::vector<Variable>& /*outputs*/,
                                  const std::vector<Variable>& output_grads) const {
  std::vector<Variable> result(inputs.size());  // the dims are disconnected
  result[0] = sum_to(output_grads.at(0), inputs[0].type());
  return result;
}

std::vector<Variable> Alloc::r_op(const std::vector<Variable>& inputs,
                                  const std::vector<Variable>& /*outputs*/,
                                  const std::vector<Variable>& eval_points) const {
  if (!eval_points.at(0).defined()) return {Variable()};
  ShapeDims dims;
  for (std::size_t i = 1; i < inputs.size(); ++i) dims.push_back(Dim(inputs[i]));
  return {alloc(eval_points[0], dims)};
}

void Alloc::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  const Tensor& value = inputs.at(0);
  Shape out_shape;
  for (std::size_t i = 1; i < inputs.size(); ++i) {
    const auto d = inputs[i].item<std::int64_t>();
    if (d < 0) {
      throw ValueError(fmt::format("{}: dim {} is {}, must be non-negative", str(), i - 1, d));
    }
    out_shape.push_back(d);
  }
  const auto fail = [&] {
    throw ShapeError(fmt::format(
        "{}: cannot broadcast a value of shape {} to the shape {} (size-1 axes broadcast only "
        "where the value's type declares them as static 1)",
        str(), shape_str(value.shape()), shape_str(out_shape)));
  };
  if (value.rank() > static_cast<int>(out_shape.size())) fail();
  const std::size_t offset = out_shape.size() - static_cast<std::size_t>(value.rank());
  Strides strides(out_shape.size(), 0);
  for (std::size_t j = 0; j < static_cast<std::size_t>(value.rank()); ++j) {
    if (value.shape()[j] == out_shape[j + offset]) {
      strides[j + offset] = value.strides()[j];
    } else if (value.shape()[j] != 1 || j >= value_broadcastable_.size() ||
               !value_broadcastable_[j]) {
      fail();
    }
  }
  Tensor out = output_buffer(outputs.at(0), value.dtype(), out_shape, value.device());
  out.copy_from(value.as_strided(out_shape, strides, value.offset()));
  outputs.at(0) = out;
}

// ---------------------------------------------------------------------------------------------
// ARange

ARange::ARange(DType dtype) : dtype_(dtype) {
  if (is_bool(dtype)) throw ValueError("ARange: the output dtype cannot be bool");
}

std::string ARange::str() const {
  return fmt::format("ARange{{{}}}", dtype_name(dtype_));
}

bool ARange::equals(const Op& other) const {
  const auto* o = dynamic_cast<const ARange*>(&other);
  return o != nullptr && o->dtype_ == dtype_;
}
std::size_t ARange::hash() const {
  return hash_values(std::string("ARange"), static_cast<int>(dtype_));
}

std::vector<TensorType> ARange::make_outputs(const std::vector<Variable>& inputs) const {
  if (inputs.size() != 3) {
    throw ValueError(
        fmt::format("{}: expected 3 inputs (start, stop, step), got {}", str(), inputs.size()));
  }
  static const char* const kNames[] = {"start", "stop", "step"};
  bool all_constant = true;
  for (std::size_t i = 0; i < 3; ++i) {
    const TensorType& t = inputs[i].type();
    if (t.rank() != 0 || is_bool(t.dtype)) {
      throw TypeError(fmt::format("{}: {} ({}) has type {}, expected an integer or float scalar",
                                  str(), kNames[i], inputs[i].label(), t.str()));
    }
    all_constant = all_constant && inputs[i].is_constant();
  }
  if (inputs[2].is_constant() && inputs[2].constant_value().item<double>() == 0.0) {
    throw ValueError(fmt::format("{}: step cannot be zero", str()));
  }
  StaticShape out{std::nullopt};
  if (all_constant) {
    out[0] = arange_length(*this, inputs[0].constant_value(), inputs[1].constant_value(),
                           inputs[2].constant_value());
  }
  return {TensorType(dtype_, std::move(out))};
}

std::vector<ShapeDims> ARange::infer_shape(const Node& node,
                                           const std::vector<ShapeDims>& /*input_shapes*/) const {
  for (const Variable& in : node.inputs) {
    if (!is_integer(in.dtype())) return {ShapeDims{Dim::unknown()}};
  }
  const Dim start(node.inputs.at(0));
  const Dim stop(node.inputs.at(1));
  const Dim step(node.inputs.at(2));
  return {ShapeDims{dim_max(ceil_div(stop - start, step), Dim(0))}};
}

std::vector<Variable> ARange::grad(const std::vector<Variable>& inputs,
                                   const std::vector<Variable>& /*outputs*/,
                                   const std::vector<Variable>& /*output_grads*/) const {
  std::vector<Variable> result;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    // Integer bounds carry no gradient (disconnected); float ones would, but a step function of
    // them is not differentiable.
    result.push_back(
        is_float(inputs[i].dtype())
            ? grad_undefined(*this, static_cast<int>(i), inputs[i], "arange is not differentiable")
            : Variable());
  }
  return result;
}

void ARange::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  const Tensor& start = inputs.at(0);
  const Tensor& step = inputs.at(2);
  const std::int64_t n = arange_length(*this, start, inputs.at(1), step);
  Tensor out = Tensor::empty(dtype_, {n});
  const bool integral =
      !is_float(start.dtype()) && !is_float(inputs[1].dtype()) && !is_float(step.dtype());
  dispatch_dtype(dtype_, [&]<typename T>() {
    T* p = out.data<T>();
    if (integral) {
      const auto a = start.item<std::int64_t>();
      const auto s = step.item<std::int64_t>();
      for (std::int64_t i = 0; i < n; ++i) p[i] = convert<T>(a + i * s);
    } else {
      const double a = start.item<double>();
      const double s = step.item<double>();
      for (std::int64_t i = 0; i < n; ++i) p[i] = convert<T>(a + static_cast<double>(i) * s);
    }
  });
  outputs.at(0) = out;
}

// ---------------------------------------------------------------------------------------------
// Builders

Variable alloc(const Variable& value, const ShapeDims& dims) {
  std::vector<Variable> inputs{value};
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (dims[i].is_unknown()) {
      throw ValueError(fmt::format("alloc: dim {} of the shape is unknown", i));
    }
    inputs.push_back(dim_variable(dims[i]));
  }
  return convgraph::apply(std::make_shared<Alloc>(static_ones(value.type())), inputs);
}

Variable full(const ShapeDims& dims, double value, DType dtype) {
  return alloc(make_constant(Tensor::scalar(dtype, value)), dims);
}
Variable zeros(const ShapeDims& dims, DType dtype) {
  return full(dims, 0.0, dtype);
}
Variable ones(const ShapeDims& dims, DType dtype) {
  return full(dims, 1.0, dtype);
}

// The *_like builders take X's dims from its type and Shape_i, not from symbolic_shape: that keeps
// static dims static without walking (and building shape nodes for) X's whole graph, which
// gradients would otherwise do once per node.
Variable full_like(const Variable& x, double value) {
  return full(shape_dims(x), value, x.dtype());
}
Variable zeros_like(const Variable& x) {
  return full_like(x, 0.0);
}
Variable ones_like(const Variable& x) {
  return full_like(x, 1.0);
}

Variable arange(const Dim& start, const Dim& stop, const Dim& step, DType dtype) {
  if (step.is_constant() && step.value() == 0) throw ValueError("arange: step cannot be zero");
  if (start.is_unknown() || stop.is_unknown() || step.is_unknown()) {
    throw ValueError(
        fmt::format("arange({}, {}, {}): a bound is unknown", start.str(), stop.str(), step.str()));
  }
  return convgraph::apply(std::make_shared<ARange>(dtype),
                          {dim_variable(start), dim_variable(stop), dim_variable(step)});
}

}  // namespace convgraph
