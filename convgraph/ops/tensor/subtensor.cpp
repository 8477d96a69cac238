#include "convgraph/ops/tensor/subtensor.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <array>
#include <type_traits>

#include "convgraph/ops/tensor/alloc.hpp"
#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/reduce.hpp"
#include "convgraph/ops/tensor/shape.hpp"
#include "convgraph/runtime/strided.hpp"

namespace convgraph {
namespace {

// A slice with Python's bounds normalisation applied (slice.indices): START and STOP lie in what
// Tensor::slice accepts and LENGTH is the number of elements taken.
struct ResolvedSlice {
  std::int64_t start = 0;
  std::int64_t stop = 0;
  std::int64_t step = 1;
  std::int64_t length = 0;
};

ResolvedSlice resolve_slice(std::optional<std::int64_t> start, std::optional<std::int64_t> stop,
                            std::int64_t step, std::int64_t len) {
  ResolvedSlice r;
  r.step = step;
  const auto clamp = [&](std::int64_t v) {
    if (v < 0) {
      v += len;
      if (v < 0) v = step < 0 ? -1 : 0;
    } else if (v >= len) {
      v = step < 0 ? len - 1 : len;
    }
    return v;
  };
  r.start = start ? clamp(*start) : (step < 0 ? len - 1 : 0);
  r.stop = stop ? clamp(*stop) : (step < 0 ? -1 : len);
  if (step > 0 && r.start < r.stop) r.length = (r.stop - r.start - 1) / step + 1;
  if (step < 0 && r.stop < r.start) r.length = (r.start - r.stop - 1) / (-step) + 1;
  return r;
}

std::string bound_str(const IndexBound& b) {
  switch (b.kind) {
    case IndexBound::Kind::absent:
      return "";
    case IndexBound::Kind::constant:
      return std::to_string(b.value);
    case IndexBound::Kind::symbolic:
      return fmt::format("${}", b.input);
  }
  return "";
}

std::size_t hash_bound(const IndexBound& b) {
  return hash_values(static_cast<int>(b.kind), b.value, b.input);
}

std::size_t hash_specs(const std::vector<IndexSpec>& specs) {
  std::size_t seed = specs.size();
  for (const IndexSpec& s : specs) {
    seed = hash_combine(seed, std::hash<bool>{}(s.is_slice));
    seed = hash_combine(seed, hash_bound(s.start));
    seed = hash_combine(seed, hash_bound(s.stop));
    seed = hash_combine(seed, hash_bound(s.step));
  }
  return seed;
}

// Turns the user's index into specs, appending the symbolic bounds to INPUTS (their positions
// there become the input numbers of the specs).
std::vector<IndexSpec> build_specs(const std::string& what, const Variable& x,
                                   const std::vector<IndexItem>& items,
                                   std::vector<Variable>& inputs) {
  if (static_cast<int>(items.size()) > x.ndim()) {
    throw ValueError(fmt::format("{}: too many indices: {} given for {} of type {} (rank {})", what,
                                 items.size(), x.label(), x.type().str(), x.ndim()));
  }
  const auto bound = [&](const std::optional<Dim>& d, std::size_t item, const char* part) {
    if (!d) return IndexBound::absent();
    if (d->is_unknown()) {
      throw ValueError(
          fmt::format("{}: the {} of index entry {} is an unknown dim", what, part, item));
    }
    if (d->is_constant()) return IndexBound::constant(d->value());
    inputs.push_back(dim_variable(*d));
    return IndexBound::symbolic(static_cast<int>(inputs.size()) - 1);
  };
  std::vector<IndexSpec> specs;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const IndexItem& item = items[i];
    IndexSpec spec;
    spec.is_slice = item.is_slice;
    if (!item.is_slice && !item.start) {
      throw ValueError(
          fmt::format("{}: index entry {} is an integer index without a value", what, i));
    }
    spec.start = bound(item.start, i, item.is_slice ? "start" : "index");
    if (item.is_slice) {
      spec.stop = bound(item.stop, i, "stop");
      spec.step = bound(item.step, i, "step");
    }
    specs.push_back(spec);
  }
  return specs;
}

// The index as IndexItems again, its symbolic bounds taken from INPUTS (for gradients).
std::vector<IndexItem> items_from_specs(const std::vector<IndexSpec>& specs,
                                        const std::vector<Variable>& inputs) {
  const auto dim = [&](const IndexBound& b) -> std::optional<Dim> {
    switch (b.kind) {
      case IndexBound::Kind::absent:
        return std::nullopt;
      case IndexBound::Kind::constant:
        return Dim(b.value);
      case IndexBound::Kind::symbolic:
        return Dim(inputs.at(static_cast<std::size_t>(b.input)));
    }
    return std::nullopt;
  };
  std::vector<IndexItem> items;
  for (const IndexSpec& s : specs) {
    items.push_back(s.is_slice ? IndexItem::slice(dim(s.start), dim(s.stop), dim(s.step))
                               : IndexItem::index(*dim(s.start)));
  }
  return items;
}

int count_symbolic(const std::vector<IndexSpec>& specs) {
  int n = 0;
  for (const IndexSpec& s : specs) {
    for (const IndexBound* b : {&s.start, &s.stop, &s.step}) {
      if (b->kind == IndexBound::Kind::symbolic) ++n;
    }
  }
  return n;
}

// Checks the index against X's type and the bound inputs, and returns the static dims of the
// indexed region. Everything decidable before run time is raised here.
StaticShape static_region(const Op& op, const Variable& x, const std::vector<IndexSpec>& specs,
                          const std::vector<Variable>& inputs, int first_bound_input) {
  const TensorType& t = x.type();
  if (static_cast<int>(specs.size()) > t.rank()) {
    throw ValueError(fmt::format("{}: too many indices: {} given for {} of type {} (rank {})",
                                 op.str(), specs.size(), x.label(), t.str(), t.rank()));
  }
  const int expected_inputs = first_bound_input + count_symbolic(specs);
  if (static_cast<int>(inputs.size()) != expected_inputs) {
    throw ValueError(fmt::format("{}: expected {} inputs ({} symbolic bounds), got {}", op.str(),
                                 expected_inputs, count_symbolic(specs), inputs.size()));
  }
  for (const IndexSpec& s : specs) {
    for (const IndexBound* b : {&s.start, &s.stop, &s.step}) {
      if (b->kind != IndexBound::Kind::symbolic) continue;
      if (b->input < first_bound_input || b->input >= expected_inputs) {
        throw ValueError(fmt::format("{}: bound input {} is out of range {}..{}", op.str(),
                                     b->input, first_bound_input, expected_inputs - 1));
      }
      const Variable& v = inputs[static_cast<std::size_t>(b->input)];
      if (v.ndim() != 0 || !is_integer(v.dtype())) {
        throw TypeError(
            fmt::format("{}: bound input {} ({}) has type {}, expected an integer scalar", op.str(),
                        b->input, v.label(), v.type().str()));
      }
    }
  }
  StaticShape region;
  for (std::size_t axis = 0; axis < specs.size(); ++axis) {
    const IndexSpec& s = specs[axis];
    const StaticDim len = t.dims[axis];
    if (!s.is_slice) {
      if (s.start.kind == IndexBound::Kind::constant && len) {
        const std::int64_t i = s.start.value;
        if (i < -*len || i >= *len) {
          throw ShapeError(
              fmt::format("{}: index {} is out of bounds for axis {} with size {} ({} of type {})",
                          op.str(), i, axis, *len, x.label(), t.str()));
        }
      }
      continue;
    }
    if (s.step.kind == IndexBound::Kind::constant && s.step.value == 0) {
      throw ValueError(fmt::format("{}: slice step cannot be zero (axis {})", op.str(), axis));
    }
    const bool bounds_constant = s.start.kind != IndexBound::Kind::symbolic &&
                                 s.stop.kind != IndexBound::Kind::symbolic &&
                                 s.step.kind != IndexBound::Kind::symbolic;
    if (len && bounds_constant) {
      const auto value = [](const IndexBound& b) -> std::optional<std::int64_t> {
        if (b.kind == IndexBound::Kind::constant) return b.value;
        return std::nullopt;
      };
      const std::int64_t step = s.step.kind == IndexBound::Kind::constant ? s.step.value : 1;
      region.push_back(resolve_slice(value(s.start), value(s.stop), step, *len).length);
    } else {
      region.push_back(std::nullopt);
    }
  }
  for (std::size_t axis = specs.size(); axis < t.dims.size(); ++axis)
    region.push_back(t.dims[axis]);
  return region;
}

// The symbolic length of a slice of an axis of length LEN, where it can be written with Dim
// arithmetic (constant bounds); unknown otherwise (symbolic_shape then falls back to Shape_i).
Dim slice_length(const IndexSpec& s, const Dim& len) {
  const auto is_symbolic = [](const IndexBound& b) { return b.kind == IndexBound::Kind::symbolic; };
  if (is_symbolic(s.start) || is_symbolic(s.stop) || is_symbolic(s.step)) return Dim::unknown();
  const std::int64_t step = s.step.kind == IndexBound::Kind::constant ? s.step.value : 1;
  const bool has_start = s.start.kind == IndexBound::Kind::constant;
  const bool has_stop = s.stop.kind == IndexBound::Kind::constant;
  if (len.is_constant()) {
    return resolve_slice(has_start ? std::optional(s.start.value) : std::nullopt,
                         has_stop ? std::optional(s.stop.value) : std::nullopt, step, len.value())
        .length;
  }
  if (!has_start && !has_stop) return ceil_div(len, Dim(step > 0 ? step : -step));
  if (step < 0) return Dim::unknown();
  // The span start:stop covers, from Python's normalisation for a positive step, written in the
  // simplest form that is exact for every length >= 0.
  Dim span;
  if (has_start && !has_stop) {
    const std::int64_t a = s.start.value;
    span = a >= 0 ? dim_max(len - Dim(a), Dim(0)) : dim_min(Dim(-a), len);
  } else if (!has_start) {
    const std::int64_t b = s.stop.value;
    span = b >= 0 ? dim_min(Dim(b), len) : dim_max(len + Dim(b), Dim(0));
  } else {
    const std::int64_t a = s.start.value;
    const std::int64_t b = s.stop.value;
    if (a >= 0 && b >= 0) {
      span = b <= a ? Dim(0) : dim_max(dim_min(Dim(b), len) - Dim(a), Dim(0));
    } else if (a >= 0) {
      span = dim_max(len - Dim(a - b), Dim(0));
    } else if (b < 0) {
      span = b <= a ? Dim(0) : dim_max(dim_min(len + Dim(b), Dim(b - a)), Dim(0));
    } else {
      span = dim_max(dim_min(Dim(b), len) - dim_max(len + Dim(a), Dim(0)), Dim(0));
    }
  }
  return ceil_div(span, Dim(step));
}

ShapeDims symbolic_region(const std::vector<IndexSpec>& specs, const ShapeDims& x_dims) {
  ShapeDims region;
  for (std::size_t axis = 0; axis < x_dims.size(); ++axis) {
    if (axis >= specs.size()) {
      region.push_back(x_dims[axis]);
    } else if (specs[axis].is_slice) {
      region.push_back(slice_length(specs[axis], x_dims[axis]));
    }
  }
  return region;
}

// The view of X that the index selects; raises before anything is written.
Tensor index_view(const Op& op, const Tensor& x, const std::vector<IndexSpec>& specs,
                  const std::vector<Tensor>& inputs) {
  if (static_cast<int>(specs.size()) > x.rank()) {
    throw ShapeError(fmt::format("{}: too many indices: {} given for an input of shape {}",
                                 op.str(), specs.size(), shape_str(x.shape())));
  }
  const auto value = [&](const IndexBound& b) -> std::optional<std::int64_t> {
    switch (b.kind) {
      case IndexBound::Kind::absent:
        return std::nullopt;
      case IndexBound::Kind::constant:
        return b.value;
      case IndexBound::Kind::symbolic:
        return inputs.at(static_cast<std::size_t>(b.input)).item<std::int64_t>();
    }
    return std::nullopt;
  };
  Tensor out = x;
  int axis = 0;  // in OUT, which loses the axes taken by integer indices
  for (std::size_t input_axis = 0; input_axis < specs.size(); ++input_axis) {
    const IndexSpec& s = specs[input_axis];
    const std::int64_t len = out.shape()[static_cast<std::size_t>(axis)];
    if (!s.is_slice) {
      const std::int64_t i = *value(s.start);
      if (i < -len || i >= len) {
        throw ShapeError(fmt::format("{}: index {} is out of bounds for axis {} with size {}",
                                     op.str(), i, input_axis, len));
      }
      out = out.select(axis, i < 0 ? i + len : i);
      continue;
    }
    const std::int64_t step = value(s.step).value_or(1);
    if (step == 0) {
      throw ValueError(
          fmt::format("{}: slice step cannot be zero (axis {})", op.str(), input_axis));
    }
    const ResolvedSlice r = resolve_slice(value(s.start), value(s.stop), step, len);
    out = out.slice(axis, r.start, r.stop, r.step);
    ++axis;
  }
  return out;
}

// Y as a view of REGION's shape: aligned with the trailing axes, stretched (stride 0) along the
// leading axes it lacks and along the broadcastable ones.
Tensor broadcast_view(const Op& op, const Tensor& y, const std::vector<bool>& broadcastable,
                      const Shape& region) {
  const int offset = static_cast<int>(region.size()) - y.rank();
  const auto fail = [&] {
    throw ShapeError(fmt::format(
        "{}: cannot broadcast y of shape {} to the indexed region of shape {} (y's size-1 axes "
        "broadcast only where its type declares them as static 1)",
        op.str(), shape_str(y.shape()), shape_str(region)));
  };
  if (offset < 0) fail();
  Strides strides(region.size(), 0);
  for (int i = 0; i < y.rank(); ++i) {
    const auto yi = static_cast<std::size_t>(i);
    const auto ri = static_cast<std::size_t>(i + offset);
    if (y.shape()[yi] == region[ri]) {
      strides[ri] = y.strides()[yi];
    } else if (y.shape()[yi] != 1 || yi >= broadcastable.size() || !broadcastable[yi]) {
      fail();
    }
  }
  return y.as_strided(region, strides, y.offset());
}

// DST += SRC elementwise (same shape; DST does not overlap SRC). Integers wrap, as numpy's do;
// bool addition is logical or.
void add_into(const Tensor& dst, const Tensor& src) {
  dispatch_dtype(dst.dtype(), [&]<typename T>() {
    T* d = dst.data<T>();
    const T* s = src.data<T>();
    for_each_run<2>(dst.shape(), {&dst.strides(), &src.strides()},
                    [&](const std::array<std::int64_t, 2>& off, std::int64_t n,
                        const std::array<std::int64_t, 2>& inner) {
                      T* dp = d + off[0];
                      const T* sp = s + off[1];
                      for (std::int64_t i = 0; i < n; ++i) {
                        T& out = dp[i * inner[0]];
                        const T in = sp[i * inner[1]];
                        if constexpr (std::is_same_v<T, bool>) {
                          out = out || in;
                        } else if constexpr (std::is_integral_v<T>) {
                          using U = std::make_unsigned_t<T>;
                          out = static_cast<T>(static_cast<U>(out) + static_cast<U>(in));
                        } else {
                          out = convert<T>(convert<compute_t<T>>(out) + convert<compute_t<T>>(in));
                        }
                      }
                    });
  });
}

std::vector<bool> static_ones(const TensorType& t) {
  std::vector<bool> mask;
  for (const auto& d : t.dims) mask.push_back(d == StaticDim{1});
  return mask;
}

// Y converted to X's dtype for writing into X, as numpy assignment does within a kind; a float
// written into an integer tensor, or a number into a bool one, is refused.
Variable y_for(const std::string& what, const Variable& x, const Variable& y) {
  if (y.dtype() == x.dtype()) return y;
  const bool narrowing =
      (is_float(y.dtype()) && !is_float(x.dtype())) || (is_bool(x.dtype()) && !is_bool(y.dtype()));
  if (narrowing) {
    throw TypeError(
        fmt::format("{}: cannot write y ({}, {}) into x ({}, {}) without losing its "
                    "kind; cast y explicitly",
                    what, y.label(), dtype_name(y.dtype()), x.label(), dtype_name(x.dtype())));
  }
  return cast(y, x.dtype());
}

Variable build_inc(const std::string& what, const Variable& x, const std::vector<IndexItem>& items,
                   const Variable& y, bool set) {
  const Variable yy = y_for(what, x, y);
  std::vector<Variable> inputs{x, yy};
  std::vector<IndexSpec> specs = build_specs(what, x, items, inputs);
  return convgraph::apply(
      std::make_shared<IncSubtensor>(std::move(specs), set, static_ones(yy.type())), inputs);
}

}  // namespace

std::string index_specs_str(const std::vector<IndexSpec>& specs) {
  std::vector<std::string> parts;
  for (const IndexSpec& s : specs) {
    if (!s.is_slice) {
      parts.push_back(bound_str(s.start));
    } else if (s.step.kind == IndexBound::Kind::absent) {
      parts.push_back(fmt::format("{}:{}", bound_str(s.start), bound_str(s.stop)));
    } else {
      parts.push_back(
          fmt::format("{}:{}:{}", bound_str(s.start), bound_str(s.stop), bound_str(s.step)));
    }
  }
  return fmt::format("{}", fmt::join(parts, ", "));
}

// ---------------------------------------------------------------------------------------------
// Subtensor

Subtensor::Subtensor(std::vector<IndexSpec> specs) : specs_(std::move(specs)) {}

std::string Subtensor::str() const {
  return fmt::format("Subtensor{{{}}}", index_specs_str(specs_));
}

bool Subtensor::equals(const Op& other) const {
  const auto* o = dynamic_cast<const Subtensor*>(&other);
  return o != nullptr && o->specs_ == specs_;
}
std::size_t Subtensor::hash() const {
  return hash_combine(std::hash<std::string>{}("Subtensor"), hash_specs(specs_));
}

std::vector<TensorType> Subtensor::make_outputs(const std::vector<Variable>& inputs) const {
  if (inputs.empty()) throw ValueError(fmt::format("{}: no input given", str()));
  const Variable& x = inputs[0];
  StaticShape region = static_region(*this, x, specs_, inputs, 1);
  return {TensorType(x.dtype(), std::move(region), x.type().device)};
}

std::vector<ShapeDims> Subtensor::infer_shape(const Node& /*node*/,
                                              const std::vector<ShapeDims>& input_shapes) const {
  return {symbolic_region(specs_, input_shapes.at(0))};
}

std::vector<Variable> Subtensor::grad(const std::vector<Variable>& inputs,
                                      const std::vector<Variable>& /*outputs*/,
                                      const std::vector<Variable>& output_grads) const {
  std::vector<Variable> result(inputs.size());  // the bounds are disconnected
  result[0] =
      inc_subtensor(zeros_like(inputs[0]), items_from_specs(specs_, inputs), output_grads.at(0));
  return result;
}

std::vector<Variable> Subtensor::r_op(const std::vector<Variable>& inputs,
                                      const std::vector<Variable>& /*outputs*/,
                                      const std::vector<Variable>& eval_points) const {
  if (!eval_points.at(0).defined()) return {Variable()};
  std::vector<Variable> args = inputs;
  args[0] = eval_points[0];
  return {convgraph::apply(std::make_shared<Subtensor>(*this), args)};
}

void Subtensor::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  outputs.at(0) = index_view(*this, inputs.at(0), specs_, inputs);
}

// ---------------------------------------------------------------------------------------------
// IncSubtensor

IncSubtensor::IncSubtensor(std::vector<IndexSpec> specs, bool set,
                           std::vector<bool> y_broadcastable)
    : specs_(std::move(specs)), set_(set), y_broadcastable_(std::move(y_broadcastable)) {}

std::string IncSubtensor::str() const {
  return fmt::format("{}{{{}}}", set_ ? "SetSubtensor" : "IncSubtensor", index_specs_str(specs_));
}

bool IncSubtensor::equals(const Op& other) const {
  const auto* o = dynamic_cast<const IncSubtensor*>(&other);
  return o != nullptr && o->specs_ == specs_ && o->set_ == set_ &&
         o->y_broadcastable_ == y_broadcastable_;
}
std::size_t IncSubtensor::hash() const {
  std::size_t seed = hash_combine(std::hash<std::string>{}("IncSubtensor"), hash_specs(specs_));
  seed = hash_combine(seed, std::hash<bool>{}(set_));
  for (bool b : y_broadcastable_) seed = hash_combine(seed, std::hash<bool>{}(b));
  return seed;
}

std::vector<TensorType> IncSubtensor::make_outputs(const std::vector<Variable>& inputs) const {
  if (inputs.size() < 2) {
    throw ValueError(fmt::format("{}: expected x and y (and the symbolic bounds), got {} inputs",
                                 str(), inputs.size()));
  }
  const Variable& x = inputs[0];
  const Variable& y = inputs[1];
  if (x.dtype() != y.dtype()) {
    throw TypeError(fmt::format("{}: y ({}) has dtype {}, expected x's dtype {}", str(), y.label(),
                                dtype_name(y.dtype()), dtype_name(x.dtype())));
  }
  const StaticShape region = static_region(*this, x, specs_, inputs, 2);
  const TensorType& yt = y.type();
  if (static_cast<int>(y_broadcastable_.size()) != yt.rank()) {
    throw ValueError(fmt::format("{}: built for a y of rank {}, but y ({}) has type {}", str(),
                                 y_broadcastable_.size(), y.label(), yt.str()));
  }
  if (yt.rank() > static_cast<int>(region.size())) {
    throw ShapeError(fmt::format(
        "{}: y ({}) of type {} has more axes than the indexed region of {} ({}), {}", str(),
        y.label(), yt.str(), x.label(), static_shape_str(region), region.size()));
  }
  const std::size_t offset = region.size() - yt.dims.size();
  for (std::size_t i = 0; i < yt.dims.size(); ++i) {
    const StaticDim yd = yt.dims[i];
    if (y_broadcastable_[i]) {
      if (yd != StaticDim{1}) {
        throw ValueError(
            fmt::format("{}: y's axis {} is marked broadcastable but y ({}) has type {}", str(), i,
                        y.label(), yt.str()));
      }
      continue;
    }
    const StaticDim rd = region[i + offset];
    if (yd && rd && *yd != *rd) {
      throw ShapeError(
          fmt::format("{}: cannot broadcast y ({}) of type {} to the indexed region {} of {}",
                      str(), y.label(), yt.str(), static_shape_str(region), x.label()));
    }
  }
  return {x.type()};
}

std::vector<ShapeDims> IncSubtensor::infer_shape(const Node& /*node*/,
                                                 const std::vector<ShapeDims>& input_shapes) const {
  return {input_shapes.at(0)};
}

std::vector<Variable> IncSubtensor::grad(const std::vector<Variable>& inputs,
                                         const std::vector<Variable>& /*outputs*/,
                                         const std::vector<Variable>& output_grads) const {
  const Variable& g = output_grads.at(0);
  const std::vector<IndexItem> items = items_from_specs(specs_, inputs);
  std::vector<Variable> result(inputs.size());  // the bounds are disconnected
  result[0] = set_ ? set_subtensor(g, items, make_constant(Tensor::scalar(g.dtype(), 0.0))) : g;
  result[1] = sum_to(subtensor(g, items), inputs[1].type());
  return result;
}

std::vector<Variable> IncSubtensor::r_op(const std::vector<Variable>& inputs,
                                         const std::vector<Variable>& /*outputs*/,
                                         const std::vector<Variable>& eval_points) const {
  const Variable& ex = eval_points.at(0);
  const Variable& ey = eval_points.size() > 1 ? eval_points[1] : Variable();
  if (!ex.defined() && !ey.defined()) return {Variable()};
  const std::vector<IndexItem> items = items_from_specs(specs_, inputs);
  const Variable x_dot = ex.defined() ? ex : zeros_like(inputs[0]);
  const Variable y_dot = ey.defined() ? ey : zeros_like(inputs[1]);
  return {set_ ? set_subtensor(x_dot, items, y_dot) : inc_subtensor(x_dot, items, y_dot)};
}

void IncSubtensor::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  const Tensor& x = inputs.at(0);
  const Tensor& y = inputs.at(1);
  if (x.dtype() != y.dtype()) {
    throw TypeError(fmt::format("{}: y has dtype {}, expected x's dtype {}", str(),
                                dtype_name(y.dtype()), dtype_name(x.dtype())));
  }
  // Every check happens on views of the input, before the output is written.
  const Tensor region_of_x = index_view(*this, x, specs_, inputs);
  const Tensor y_view = broadcast_view(*this, y, y_broadcastable_, region_of_x.shape());
  Tensor out = x.clone();
  Tensor region = index_view(*this, out, specs_, inputs);
  if (set_) {
    region.copy_from(y_view);
  } else {
    add_into(region, y_view);
  }
  outputs.at(0) = out;
}

// ---------------------------------------------------------------------------------------------
// Builders

Variable subtensor(const Variable& x, const std::vector<IndexItem>& items) {
  std::vector<Variable> inputs{x};
  std::vector<IndexSpec> specs = build_specs("subtensor", x, items, inputs);
  if (specs.empty()) return x;
  return convgraph::apply(std::make_shared<Subtensor>(std::move(specs)), inputs);
}

Variable inc_subtensor(const Variable& x, const std::vector<IndexItem>& items, const Variable& y) {
  return build_inc("inc_subtensor", x, items, y, /*set=*/false);
}

Variable set_subtensor(const Variable& x, const std::vector<IndexItem>& items, const Variable& y) {
  return build_inc("set_subtensor", x, items, y, /*set=*/true);
}

}  // namespace convgraph
