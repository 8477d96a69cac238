#include "convgraph/ops/tensor/reduce.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <numeric>
#include <type_traits>

#include "convgraph/base/config.hpp"
#include "convgraph/ops/tensor/alloc.hpp"
#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/reshape.hpp"
#include "convgraph/ops/tensor/shape.hpp"
#include "convgraph/runtime/step_memory.hpp"
#include "convgraph/runtime/strided.hpp"

namespace convgraph {
namespace {

DType floatx() {
  return parse_dtype_or_throw(global_config().get("floatX"), "flag floatX");
}

// A Reduce node over exactly AXES (already normalised): unlike sum() & co., an empty AXES here
// means no axis, which is what the gradients need when they rebuild a reduction.
Variable reduce_exact(ReduceOp op, const Variable& x, std::vector<int> axes, bool keepdims) {
  return apply(std::make_shared<Reduce>(op, std::move(axes), keepdims), {x});
}

// OUT (a reduction of an input of rank RANK over AXES) with the reduced axes reinserted as
// broadcastable axes of size 1, so that it broadcasts against the input.
Variable with_kept_dims(const Variable& out, int rank, const std::vector<int>& axes,
                        bool keepdims) {
  if (keepdims || axes.empty()) return out;
  std::vector<int> pattern;
  int next = 0;
  for (int axis = 0; axis < rank; ++axis) {
    pattern.push_back(std::binary_search(axes.begin(), axes.end(), axis) ? -1 : next++);
  }
  return dimshuffle(out, pattern);
}

// The number of elements each output element of a reduction of X over AXES combines, as a
// scalar of DTYPE.
Variable reduced_count(const Variable& x, const std::vector<int>& axes, DType dtype) {
  const ShapeDims dims = shape_dims(x);
  Dim count(std::int64_t{1});
  for (int axis : axes) count = count * dims[static_cast<std::size_t>(axis)];
  if (count.is_constant()) return constant(static_cast<double>(count.value()), dtype);
  return cast(dim_variable(count), dtype);
}

// d prod(x over AXES) / d x, element by element, exact when x holds zeros: with one zero in a
// reduced group, that element gets the product of the others and the rest get 0; with two or
// more every element gets 0. It divides by x with its zeros replaced by 1, never by zero.
Variable prod_derivative(const Variable& x, const std::vector<int>& axes) {
  const DType dt = x.dtype();
  const Variable zero = constant(0.0, dt);
  const Variable one = constant(1.0, dt);
  const Variable is_zero = eq(x, zero);
  const Variable x_nonzero = where(is_zero, one, x);
  const Variable prod_nonzero = reduce_exact(ReduceOp::prod, x_nonzero, axes, true);
  const Variable zero_count = reduce_exact(ReduceOp::sum, is_zero, axes, true);  // int64
  const Variable if_zero = where(eq(zero_count, constant(1.0, DType::int64)), prod_nonzero, zero);
  const Variable if_nonzero =
      where(eq(zero_count, constant(0.0, DType::int64)), true_div(prod_nonzero, x_nonzero), zero);
  return where(is_zero, if_zero, if_nonzero);
}

// ---- the reference kernel ----

template <typename Acc>
Acc wrapping_add(Acc a, Acc b) {
  if constexpr (std::is_same_v<Acc, std::int64_t>) {
    // Signed overflow is undefined; numpy wraps, and so does this.
    return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) + static_cast<std::uint64_t>(b));
  } else {
    return a + b;
  }
}

template <typename Acc>
Acc wrapping_mul(Acc a, Acc b) {
  if constexpr (std::is_same_v<Acc, std::int64_t>) {
    return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) * static_cast<std::uint64_t>(b));
  } else {
    return a * b;
  }
}

// max/min propagate NaN, as numpy does: once the accumulator is NaN it stays NaN.
template <typename Acc>
Acc take_max(Acc a, Acc v) {
  if constexpr (std::is_floating_point_v<Acc>) {
    return (v > a || std::isnan(v)) ? v : a;
  } else {
    return v > a ? v : a;
  }
}

template <typename Acc>
Acc take_min(Acc a, Acc v) {
  if constexpr (std::is_floating_point_v<Acc>) {
    return (v < a || std::isnan(v)) ? v : a;
  } else {
    return v < a ? v : a;
  }
}

// The accumulator of sum/prod/mean for storage type T: double for float32 (accuracy), float for
// float16 (as it computes), int64 for integers and bools (sum/prod; mean accumulates in double
// like numpy, so that large integer sums do not wrap).
template <typename T>
using sum_acc_t =
    std::conditional_t<std::is_same_v<T, Half>, float,
                       std::conditional_t<std::is_floating_point_v<T>, double, std::int64_t>>;
template <typename T>
using mean_acc_t = std::conditional_t<std::is_same_v<T, Half>, float, double>;
// max/min compare in the compute type; bools as bytes, since std::vector<bool> has no data().
template <typename T>
using minmax_acc_t = std::conditional_t<std::is_same_v<T, bool>, std::uint8_t, compute_t<T>>;

// Combines every element of X into ACC (one entry per output element, in the row-major order of
// the keepdims output shape) with COMBINE. Input axes are visited in decreasing stride order so
// that the innermost loop walks memory contiguously whatever the layout; a run along reduced axes
// is folded into a local accumulator first (several of them for sums and products, which breaks
// the dependency chain of a single one).
template <typename T, typename Acc, typename Combine>
void accumulate(const Tensor& x, const std::vector<bool>& reduced, Acc identity, bool splittable,
                Combine combine, std::vector<Acc>& acc) {
  const int rank = x.rank();
  Shape out_shape = x.shape();
  for (int i = 0; i < rank; ++i) {
    if (reduced[static_cast<std::size_t>(i)]) out_shape[static_cast<std::size_t>(i)] = 1;
  }
  Strides out_strides = contiguous_strides(out_shape);
  for (int i = 0; i < rank; ++i) {
    if (reduced[static_cast<std::size_t>(i)]) out_strides[static_cast<std::size_t>(i)] = 0;
  }
  std::vector<int> order(static_cast<std::size_t>(rank));
  std::iota(order.begin(), order.end(), 0);
  const Strides& in_strides = x.strides();
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return std::abs(in_strides[static_cast<std::size_t>(a)]) >
           std::abs(in_strides[static_cast<std::size_t>(b)]);
  });
  Shape shape;
  Strides out_st, in_st;
  for (int axis : order) {
    shape.push_back(x.shape()[static_cast<std::size_t>(axis)]);
    out_st.push_back(out_strides[static_cast<std::size_t>(axis)]);
    in_st.push_back(in_strides[static_cast<std::size_t>(axis)]);
  }
  const T* base = x.data<T>();
  Acc* out = acc.data();
  for_each_run<2>(
      shape, {&out_st, &in_st},
      [&](const std::array<std::int64_t, 2>& off, std::int64_t n,
          const std::array<std::int64_t, 2>& inner) {
        const T* p = base + off[1];
        const std::int64_t step = inner[1];
        Acc* a = out + off[0];
        if (inner[0] != 0) {
          for (std::int64_t i = 0; i < n; ++i) {
            a[i * inner[0]] =
                combine(a[i * inner[0]], convert<Acc>(convert<compute_t<T>>(p[i * step])));
          }
          return;
        }
        Acc local = identity;
        std::int64_t i = 0;
        if (splittable && n >= 8) {
          Acc part[4] = {identity, identity, identity, identity};
          for (; i + 4 <= n; i += 4) {
            for (int j = 0; j < 4; ++j) {
              part[j] = combine(part[j], convert<Acc>(convert<compute_t<T>>(p[(i + j) * step])));
            }
          }
          local = combine(combine(part[0], part[1]), combine(part[2], part[3]));
        }
        for (; i < n; ++i) local = combine(local, convert<Acc>(convert<compute_t<T>>(p[i * step])));
        *a = combine(*a, local);
      });
}

template <typename Acc>
Acc lowest_value() {
  if constexpr (std::is_floating_point_v<Acc>) {
    return -std::numeric_limits<Acc>::infinity();
  } else {
    return std::numeric_limits<Acc>::lowest();
  }
}

template <typename Acc>
Acc highest_value() {
  if constexpr (std::is_floating_point_v<Acc>) {
    return std::numeric_limits<Acc>::infinity();
  } else {
    return std::numeric_limits<Acc>::max();
  }
}

// Writes ACC (divided by DIVISOR for a mean) into OUT, converting to OUT's dtype.
template <typename Acc>
void store(const std::vector<Acc>& acc, Tensor& out, std::int64_t divisor = 0) {
  dispatch_dtype(out.dtype(), [&]<typename O>() {
    O* dst = out.data<O>();
    for (std::size_t i = 0; i < acc.size(); ++i) {
      if constexpr (std::is_same_v<O, bool>) {
        dst[i] = static_cast<bool>(acc[i]);
      } else if (divisor != 0) {
        dst[i] = convert<O>(acc[i] / static_cast<Acc>(divisor));
      } else {
        dst[i] = convert<O>(acc[i]);
      }
    }
  });
}

}  // namespace

// ---- public helpers ----

std::string_view reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return "sum";
    case ReduceOp::prod:
      return "prod";
    case ReduceOp::max:
      return "max";
    case ReduceOp::min:
      return "min";
    case ReduceOp::mean:
      return "mean";
  }
  return "?";
}

DType reduce_output_dtype(ReduceOp op, DType input) {
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::prod:
      return is_float(input) ? input : DType::int64;
    case ReduceOp::mean:
      return is_float(input) ? input : floatx();
    case ReduceOp::max:
    case ReduceOp::min:
      return input;
  }
  return input;
}

std::vector<int> normalize_axes(const std::vector<int>& axes, int rank, std::string_view what) {
  std::vector<int> out;
  if (axes.empty()) {
    out.resize(static_cast<std::size_t>(rank));
    std::iota(out.begin(), out.end(), 0);
    return out;
  }
  for (int axis : axes) {
    const int a = axis < 0 ? axis + rank : axis;
    if (a < 0 || a >= rank) {
      if (rank == 0) {
        throw ValueError(
            fmt::format("{}: axis {} is out of range for a tensor of rank 0 (a "
                        "scalar has no axes)",
                        what, axis));
      }
      throw ValueError(
          fmt::format("{}: axis {} is out of range for a tensor of rank {} (valid "
                      "axes: {}..{})",
                      what, axis, rank, -rank, rank - 1));
    }
    if (std::find(out.begin(), out.end(), a) != out.end()) {
      throw ValueError(
          fmt::format("{}: axes [{}] name axis {} twice (repeated axis) for a tensor "
                      "of rank {}",
                      what, fmt::join(axes, ", "), a, rank));
    }
    out.push_back(a);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Variable reduce(ReduceOp op, const Variable& x, const std::vector<int>& axes, bool keepdims) {
  return reduce_exact(op, x, normalize_axes(axes, x.ndim(), reduce_op_name(op)), keepdims);
}

Variable sum(const Variable& x, const std::vector<int>& axes, bool keepdims) {
  return reduce(ReduceOp::sum, x, axes, keepdims);
}
Variable mean(const Variable& x, const std::vector<int>& axes, bool keepdims) {
  return reduce(ReduceOp::mean, x, axes, keepdims);
}
Variable prod(const Variable& x, const std::vector<int>& axes, bool keepdims) {
  return reduce(ReduceOp::prod, x, axes, keepdims);
}
Variable max(const Variable& x, const std::vector<int>& axes, bool keepdims) {
  return reduce(ReduceOp::max, x, axes, keepdims);
}
Variable min(const Variable& x, const std::vector<int>& axes, bool keepdims) {
  return reduce(ReduceOp::min, x, axes, keepdims);
}

Variable sum_to(const Variable& g, const TensorType& target) {
  const int rank = g.ndim();
  const int target_rank = target.rank();
  if (rank < target.rank()) {
    throw ValueError(fmt::format("sum_to: {} of type {} has fewer axes than the target type {}",
                                 g.label(), g.type().str(), target.str()));
  }
  const int lead = rank - target_rank;
  std::vector<int> axes;
  for (int axis = 0; axis < lead; ++axis) axes.push_back(axis);
  for (int i = 0; i < target_rank; ++i) {
    const StaticDim wanted = target.dims[static_cast<std::size_t>(i)];
    const StaticDim have = g.type().dims[static_cast<std::size_t>(lead + i)];
    if (wanted == StaticDim{1} && have != StaticDim{1}) axes.push_back(lead + i);
  }
  Variable result = g;
  if (!axes.empty()) {
    // One pass with keepdims, then the leading axes (now of static size 1) are dropped.
    result = reduce_exact(ReduceOp::sum, g, axes, true);
    if (lead > 0) {
      std::vector<int> pattern(static_cast<std::size_t>(target_rank));
      std::iota(pattern.begin(), pattern.end(), lead);
      result = dimshuffle(result, pattern);
    }
  }
  if (result.dtype() != target.dtype) result = cast(result, target.dtype);
  return result;
}

// ---- Reduce ----

Reduce::Reduce(ReduceOp op, std::vector<int> axes, bool keepdims)
    : op_(op), axes_(std::move(axes)), keepdims_(keepdims) {
  for (std::size_t i = 0; i < axes_.size(); ++i) {
    if (axes_[i] < 0 || (i > 0 && axes_[i] <= axes_[i - 1])) {
      throw ValueError(
          fmt::format("Reduce{{{}}}: axes [{}] must be non-negative, sorted and "
                      "distinct (use sum(), max(), ... to normalise them)",
                      reduce_op_name(op_), fmt::join(axes_, ", ")));
    }
  }
}

std::string Reduce::str() const {
  return fmt::format("Reduce{{{}, axes=[{}]{}}}", reduce_op_name(op_), fmt::join(axes_, ", "),
                     keepdims_ ? ", keepdims" : "");
}

bool Reduce::equals(const Op& other) const {
  const auto* o = dynamic_cast<const Reduce*>(&other);
  return o != nullptr && o->op_ == op_ && o->axes_ == axes_ && o->keepdims_ == keepdims_;
}

std::size_t Reduce::hash() const {
  return hash_combine(hash_values(std::string("Reduce"), static_cast<int>(op_), keepdims_),
                      hash_range(axes_));
}

bool Reduce::reduces(int axis) const {
  return std::binary_search(axes_.begin(), axes_.end(), axis);
}

std::vector<TensorType> Reduce::make_outputs(const std::vector<Variable>& inputs) const {
  if (inputs.size() != 1) {
    throw ValueError(fmt::format("{}: expected 1 input, got {}", str(), inputs.size()));
  }
  const TensorType& in = inputs[0].type();
  if (!axes_.empty() && axes_.back() >= in.rank()) {
    throw ValueError(fmt::format("{}: axis {} is out of range for {} of rank {} ({})", str(),
                                 axes_.back(), inputs[0].label(), in.rank(), in.str()));
  }
  StaticShape dims;
  for (int axis = 0; axis < in.rank(); ++axis) {
    if (!reduces(axis)) {
      dims.push_back(in.dims[static_cast<std::size_t>(axis)]);
    } else if (keepdims_) {
      dims.push_back(1);
    }
  }
  return {TensorType(reduce_output_dtype(op_, in.dtype), std::move(dims), in.device)};
}

std::vector<ShapeDims> Reduce::infer_shape(const Node& /*node*/,
                                           const std::vector<ShapeDims>& input_shapes) const {
  ShapeDims out;
  const ShapeDims& in = input_shapes.at(0);
  for (int axis = 0; axis < static_cast<int>(in.size()); ++axis) {
    if (!reduces(axis)) {
      out.push_back(in[static_cast<std::size_t>(axis)]);
    } else if (keepdims_) {
      out.push_back(Dim(std::int64_t{1}));
    }
  }
  return {out};
}

std::vector<Variable> Reduce::grad(const std::vector<Variable>& inputs,
                                   const std::vector<Variable>& outputs,
                                   const std::vector<Variable>& output_grads) const {
  const Variable& x = inputs[0];
  // Integer and bool inputs are piecewise constant: their gradient is zero (disconnected).
  if (!is_float(x.dtype())) return {Variable()};
  const DType dt = x.dtype();
  const int rank = x.ndim();
  Variable g = output_grads[0];
  if (g.dtype() != dt) g = cast(g, dt);
  const Variable g_kept = with_kept_dims(g, rank, axes_, keepdims_);
  Variable gx;
  switch (op_) {
    case ReduceOp::sum:
      gx = alloc(g_kept, shape_dims(x));
      break;
    case ReduceOp::mean:
      gx = true_div(alloc(g_kept, shape_dims(x)), reduced_count(x, axes_, dt));
      break;
    case ReduceOp::max:
    case ReduceOp::min: {
      const Variable out_kept = with_kept_dims(outputs[0], rank, axes_, keepdims_);
      gx = where(eq(x, out_kept), g_kept, constant(0.0, dt));
      break;
    }
    case ReduceOp::prod:
      gx = mul(g_kept, prod_derivative(x, axes_));
      break;
  }
  return {gx};
}

std::vector<Variable> Reduce::r_op(const std::vector<Variable>& inputs,
                                   const std::vector<Variable>& outputs,
                                   const std::vector<Variable>& eval_points) const {
  const Variable& x = inputs[0];
  if (!eval_points[0].defined() || !is_float(x.dtype())) return {Variable()};
  const DType dt = x.dtype();
  Variable rx = eval_points[0];
  if (rx.dtype() != dt) rx = cast(rx, dt);
  switch (op_) {
    case ReduceOp::sum:
    case ReduceOp::mean:
      return {reduce_exact(op_, rx, axes_, keepdims_)};
    case ReduceOp::max:
    case ReduceOp::min: {
      const Variable out_kept = with_kept_dims(outputs[0], x.ndim(), axes_, keepdims_);
      const Variable tie = cast(eq(x, out_kept), dt);
      return {true_div(reduce_exact(ReduceOp::sum, mul(tie, rx), axes_, keepdims_),
                       reduce_exact(ReduceOp::sum, tie, axes_, keepdims_))};
    }
    case ReduceOp::prod:
      return {reduce_exact(ReduceOp::sum, mul(prod_derivative(x, axes_), rx), axes_, keepdims_)};
  }
  return {Variable()};
}

void Reduce::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  const Tensor& x = inputs.at(0);
  const int rank = x.rank();
  if (!axes_.empty() && axes_.back() >= rank) {
    throw ValueError(fmt::format("{}: axis {} is out of range for an input of shape {}", str(),
                                 axes_.back(), shape_str(x.shape())));
  }
  std::vector<bool> reduced(static_cast<std::size_t>(rank), false);
  std::int64_t count = 1;
  for (int axis : axes_) {
    reduced[static_cast<std::size_t>(axis)] = true;
    count *= x.shape()[static_cast<std::size_t>(axis)];
  }
  if (op_ == ReduceOp::max || op_ == ReduceOp::min) {
    for (int axis : axes_) {
      if (x.shape()[static_cast<std::size_t>(axis)] == 0) {
        throw ShapeError(fmt::format("{} over an empty axis {} of shape {}: there is no identity",
                                     reduce_op_name(op_), axis, shape_str(x.shape())));
      }
    }
  }
  Shape out_shape;
  for (int axis = 0; axis < rank; ++axis) {
    if (!reduced[static_cast<std::size_t>(axis)]) {
      out_shape.push_back(x.shape()[static_cast<std::size_t>(axis)]);
    } else if (keepdims_) {
      out_shape.push_back(1);
    }
  }
  Tensor out = output_buffer(outputs.at(0), reduce_output_dtype(op_, x.dtype()), out_shape);
  const auto n_out = static_cast<std::size_t>(out.numel());

  dispatch_dtype(x.dtype(), [&]<typename T>() {
    switch (op_) {
      case ReduceOp::sum: {
        using Acc = sum_acc_t<T>;
        std::vector<Acc> acc(n_out, Acc(0));
        accumulate<T>(
            x, reduced, Acc(0), true, [](Acc a, Acc b) { return wrapping_add(a, b); }, acc);
        store(acc, out);
        break;
      }
      case ReduceOp::prod: {
        using Acc = sum_acc_t<T>;
        std::vector<Acc> acc(n_out, Acc(1));
        accumulate<T>(
            x, reduced, Acc(1), true, [](Acc a, Acc b) { return wrapping_mul(a, b); }, acc);
        store(acc, out);
        break;
      }
      case ReduceOp::mean: {
        using Acc = mean_acc_t<T>;
        std::vector<Acc> acc(n_out, Acc(0));
        accumulate<T>(
            x, reduced, Acc(0), true, [](Acc a, Acc b) { return a + b; }, acc);
        store(acc, out, count);
        // numpy's mean over an empty axis is 0/0: NaN.
        if (count == 0) out.fill(std::numeric_limits<double>::quiet_NaN());
        break;
      }
      case ReduceOp::max: {
        using Acc = minmax_acc_t<T>;
        std::vector<Acc> acc(n_out, lowest_value<Acc>());
        accumulate<T>(
            x, reduced, lowest_value<Acc>(), false, [](Acc a, Acc b) { return take_max(a, b); },
            acc);
        store(acc, out);
        break;
      }
      case ReduceOp::min: {
        using Acc = minmax_acc_t<T>;
        std::vector<Acc> acc(n_out, highest_value<Acc>());
        accumulate<T>(
            x, reduced, highest_value<Acc>(), false, [](Acc a, Acc b) { return take_min(a, b); },
            acc);
        store(acc, out);
        break;
      }
    }
  });
  outputs.at(0) = std::move(out);
}

}  // namespace convgraph
