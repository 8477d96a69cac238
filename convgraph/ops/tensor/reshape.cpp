#include "convgraph/ops/tensor/reshape.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <optional>

#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/reduce.hpp"
#include "convgraph/ops/tensor/shape.hpp"

namespace convgraph {
namespace {

void check_input_count(const Op& op, const std::vector<Variable>& inputs, std::size_t expected) {
  if (inputs.size() != expected) {
    throw ValueError(
        fmt::format("{}: expected {} input(s), got {}", op.str(), expected, inputs.size()));
  }
}

std::string entries_str(const std::vector<std::optional<std::int64_t>>& entries) {
  std::vector<std::string> parts;
  for (const auto& e : entries) parts.push_back(e ? std::to_string(*e) : std::string("?"));
  return fmt::format("[{}]", fmt::join(parts, ", "));
}

// The entries of a reshape target known at build time: all of a constant, the constant inputs of
// a MakeVector.
std::vector<std::optional<std::int64_t>> known_entries(const Variable& target, int ndim) {
  std::vector<std::optional<std::int64_t>> entries(static_cast<std::size_t>(ndim));
  if (target.is_constant()) {
    const auto values = target.constant_value().to_vector<std::int64_t>();
    for (std::size_t i = 0; i < entries.size() && i < values.size(); ++i) entries[i] = values[i];
  } else if (const Node* node = target.owner();
             node != nullptr && node->op->name() == "MakeVector") {
    for (std::size_t i = 0; i < entries.size() && i < node->inputs.size(); ++i) {
      if (node->inputs[i].is_constant()) {
        entries[i] = node->inputs[i].constant_value().item<std::int64_t>();
      }
    }
  }
  return entries;
}

void check_entries(const Op& op, const std::vector<std::optional<std::int64_t>>& entries) {
  int minus_ones = 0;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (!entries[i]) continue;
    if (*entries[i] < -1) {
      throw ValueError(fmt::format(
          "{}: entry {} of the new shape {} is {}; entries must be >= 0, or -1 (inferred)",
          op.str(), i, entries_str(entries), *entries[i]));
    }
    if (*entries[i] == -1) ++minus_ones;
  }
  if (minus_ones > 1) {
    throw ValueError(
        fmt::format("{}: the new shape {} has {} entries -1; at most one may be inferred", op.str(),
                    entries_str(entries), minus_ones));
  }
}

std::vector<int> normalized_axes(const std::string& what, const std::vector<int>& axes,
                                 const Variable& x) {
  const int rank = x.ndim();
  std::vector<int> out;
  for (int axis : axes) {
    const int a = axis < 0 ? axis + rank : axis;
    if (a < 0 || a >= rank) {
      throw ValueError(fmt::format("{}: axis {} is out of range for {} of type {} (rank {})", what,
                                   axis, x.label(), x.type().str(), rank));
    }
    if (std::find(out.begin(), out.end(), a) != out.end()) {
      throw ValueError(
          fmt::format("{}: axis {} is repeated in [{}]", what, axis, fmt::join(axes, ", ")));
    }
    out.push_back(a);
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Reshape

Reshape::Reshape(int ndim) : ndim_(ndim) {
  if (ndim < 0) throw ValueError(fmt::format("Reshape: ndim must be non-negative, got {}", ndim));
}

std::string Reshape::str() const {
  return fmt::format("Reshape{{{}}}", ndim_);
}

bool Reshape::equals(const Op& other) const {
  const auto* o = dynamic_cast<const Reshape*>(&other);
  return o != nullptr && o->ndim_ == ndim_;
}
std::size_t Reshape::hash() const {
  return hash_values(std::string("Reshape"), ndim_);
}

std::vector<TensorType> Reshape::make_outputs(const std::vector<Variable>& inputs) const {
  check_input_count(*this, inputs, 2);
  const Variable& x = inputs[0];
  const Variable& target = inputs[1];
  const TensorType& tt = target.type();
  if (tt.rank() != 1 || !is_integer(tt.dtype)) {
    throw TypeError(fmt::format("{}: the new shape ({}) has type {}, expected an int64 vector",
                                str(), target.label(), tt.str()));
  }
  if (!tt.dims[0]) {
    throw TypeError(
        fmt::format("{}: the new shape ({}) has type {}, expected a vector of static length {}",
                    str(), target.label(), tt.str(), ndim_));
  }
  if (*tt.dims[0] != ndim_) {
    throw ShapeError(fmt::format("{}: the new shape ({}) has {} entries, expected {}", str(),
                                 target.label(), *tt.dims[0], ndim_));
  }
  const auto entries = known_entries(target, ndim_);
  check_entries(*this, entries);

  StaticShape out(static_cast<std::size_t>(ndim_));
  int unresolved = -1;
  int num_unresolved = 0;
  std::int64_t product_of_known = 1;
  for (int i = 0; i < ndim_; ++i) {
    const auto& e = entries[static_cast<std::size_t>(i)];
    if (e && *e >= 0) {
      out[static_cast<std::size_t>(i)] = *e;
      if (__builtin_mul_overflow(product_of_known, *e, &product_of_known)) {
        throw ShapeError(fmt::format("{}: the new shape {} has more elements than int64 can count",
                                     str(), entries_str(entries)));
      }
    } else {
      unresolved = i;
      ++num_unresolved;
    }
  }
  if (x.type().fully_known()) {
    Shape static_dims;
    for (const auto& d : x.type().dims) static_dims.push_back(*d);
    const std::int64_t numel = shape_numel(static_dims);
    const auto fail = [&] {
      throw ShapeError(fmt::format("{}: cannot reshape {} of type {} ({} elements) to {}", str(),
                                   x.label(), x.type().str(), numel, entries_str(entries)));
    };
    if (num_unresolved == 0 && product_of_known != numel) fail();
    if (num_unresolved == 1) {
      const auto& e = entries[static_cast<std::size_t>(unresolved)];
      const bool divisible = product_of_known != 0 && numel % product_of_known == 0;
      if (e && *e == -1 && !divisible) fail();
      if (divisible) out[static_cast<std::size_t>(unresolved)] = numel / product_of_known;
    }
  }
  return {TensorType(x.dtype(), std::move(out), x.type().device)};
}

std::vector<ShapeDims> Reshape::infer_shape(const Node& node,
                                            const std::vector<ShapeDims>& input_shapes) const {
  const Variable& target = node.inputs.at(1);
  ShapeDims entries(static_cast<std::size_t>(ndim_));
  if (target.is_constant()) {
    const auto values = target.constant_value().to_vector<std::int64_t>();
    for (std::size_t i = 0; i < entries.size(); ++i) entries[i] = Dim(values.at(i));
  } else if (const Node* mv = target.owner(); mv != nullptr && mv->op->name() == "MakeVector") {
    for (std::size_t i = 0; i < entries.size(); ++i) entries[i] = Dim(mv->inputs.at(i));
  }
  int minus_one = -1;
  for (int i = 0; i < ndim_; ++i) {
    const Dim& e = entries[static_cast<std::size_t>(i)];
    if (e.is_constant() && e.value() == -1) minus_one = i;
  }
  ShapeDims out(static_cast<std::size_t>(ndim_));
  for (int i = 0; i < ndim_; ++i) {
    const Dim& e = entries[static_cast<std::size_t>(i)];
    if (e.is_constant() && e.value() >= 0) {
      out[static_cast<std::size_t>(i)] = e;
    } else if (e.is_symbolic()) {
      // A symbolic entry could be -1 at run time, unless a constant entry is the -1 (only one may
      // be) or it is the size of some tensor's axis.
      const Node* owner = e.variable().owner();
      if (minus_one >= 0 || (owner != nullptr && owner->op->name() == "Shape_i")) {
        out[static_cast<std::size_t>(i)] = e;
      }
    }
  }
  if (minus_one >= 0) {
    // The inferred dim is prod(input dims) // prod(other entries). Factors on both sides cancel
    // first, so that reshape(x, {shape_i(x, 0), -1}) gets the product of x's other dims rather
    // than (d0 * d1 * d2) // d0.
    ShapeDims numerator = input_shapes.at(0);
    ShapeDims denominator;
    for (int i = 0; i < ndim_; ++i) {
      if (i != minus_one) denominator.push_back(out[static_cast<std::size_t>(i)]);
    }
    for (auto it = denominator.begin(); it != denominator.end();) {
      auto match = std::find_if(numerator.begin(), numerator.end(),
                                [&](const Dim& d) { return !d.is_constant() && same_dim(d, *it); });
      if (match != numerator.end()) {
        numerator.erase(match);
        it = denominator.erase(it);
      } else {
        ++it;
      }
    }
    Dim total(1);
    for (const Dim& d : numerator) total = total * d;
    Dim others(1);
    for (const Dim& d : denominator) others = others * d;
    const bool divides =
        !(others.is_constant() && others.value() == 0) &&
        !(total.is_constant() && others.is_constant() && total.value() % others.value() != 0);
    if (divides) out[static_cast<std::size_t>(minus_one)] = floor_div(total, others);
  }
  return {out};
}

std::vector<Variable> Reshape::grad(const std::vector<Variable>& inputs,
                                    const std::vector<Variable>& /*outputs*/,
                                    const std::vector<Variable>& output_grads) const {
  return {reshape(output_grads.at(0), shape_dims(inputs.at(0))), Variable()};
}

std::vector<Variable> Reshape::r_op(const std::vector<Variable>& inputs,
                                    const std::vector<Variable>& /*outputs*/,
                                    const std::vector<Variable>& eval_points) const {
  if (!eval_points.at(0).defined()) return {Variable()};
  return {convgraph::apply(std::make_shared<Reshape>(*this), {eval_points[0], inputs.at(1)})};
}

void Reshape::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  const Tensor& x = inputs.at(0);
  const std::vector<std::int64_t> requested = inputs.at(1).to_vector<std::int64_t>();
  if (static_cast<int>(requested.size()) != ndim_) {
    throw ShapeError(fmt::format("{}: the new shape {} has {} entries, expected {}", str(),
                                 shape_str(requested), requested.size(), ndim_));
  }
  std::vector<std::optional<std::int64_t>> entries(requested.begin(), requested.end());
  check_entries(*this, entries);
  Shape result = requested;
  std::int64_t product_of_known = 1;
  int minus_one = -1;
  for (int i = 0; i < ndim_; ++i) {
    const std::int64_t e = requested[static_cast<std::size_t>(i)];
    if (e == -1) {
      minus_one = i;
    } else if (__builtin_mul_overflow(product_of_known, e, &product_of_known)) {
      throw ShapeError(fmt::format("{}: the new shape {} has more elements than int64 can count",
                                   str(), shape_str(requested)));
    }
  }
  const std::int64_t numel = x.numel();
  const auto fail = [&] {
    throw ShapeError(fmt::format("{}: cannot reshape an input of shape {} ({} elements) to {}",
                                 str(), shape_str(x.shape()), numel, shape_str(requested)));
  };
  if (minus_one >= 0) {
    if (product_of_known == 0 || numel % product_of_known != 0) fail();
    result[static_cast<std::size_t>(minus_one)] = numel / product_of_known;
  } else if (product_of_known != numel) {
    fail();
  }
  outputs.at(0) = x.reshape(result);
}

// ---------------------------------------------------------------------------------------------
// DimShuffle

DimShuffle::DimShuffle(std::vector<int> pattern) : pattern_(std::move(pattern)) {}

std::string DimShuffle::str() const {
  std::vector<std::string> parts;
  for (int p : pattern_) parts.push_back(p < 0 ? std::string("x") : std::to_string(p));
  return fmt::format("DimShuffle{{{}}}", fmt::join(parts, ","));
}

bool DimShuffle::equals(const Op& other) const {
  const auto* o = dynamic_cast<const DimShuffle*>(&other);
  return o != nullptr && o->pattern_ == pattern_;
}
std::size_t DimShuffle::hash() const {
  return hash_combine(std::hash<std::string>{}("DimShuffle"), hash_range(pattern_));
}

std::vector<TensorType> DimShuffle::make_outputs(const std::vector<Variable>& inputs) const {
  check_input_count(*this, inputs, 1);
  const Variable& x = inputs[0];
  const TensorType& t = x.type();
  const int rank = t.rank();
  std::vector<bool> used(static_cast<std::size_t>(rank), false);
  StaticShape out;
  for (std::size_t i = 0; i < pattern_.size(); ++i) {
    const int p = pattern_[i];
    if (p == -1) {
      out.push_back(1);
      continue;
    }
    if (p < -1 || p >= rank) {
      throw ValueError(fmt::format(
          "{}: pattern entry {} (position {}) is out of range for {} of type {}; entries are "
          "input axes 0..{} or -1 for a new axis",
          str(), p, i, x.label(), t.str(), rank - 1));
    }
    if (used[static_cast<std::size_t>(p)]) {
      throw ValueError(
          fmt::format("{}: input axis {} appears more than once in the pattern", str(), p));
    }
    used[static_cast<std::size_t>(p)] = true;
    out.push_back(t.dims[static_cast<std::size_t>(p)]);
  }
  for (int axis = 0; axis < rank; ++axis) {
    if (used[static_cast<std::size_t>(axis)]) continue;
    const StaticDim d = t.dims[static_cast<std::size_t>(axis)];
    if (d != StaticDim{1}) {
      throw ValueError(fmt::format(
          "{}: drops axis {} of {} of type {}, whose dim is {}; only axes of static dim 1 can be "
          "dropped",
          str(), axis, x.label(), t.str(), d ? std::to_string(*d) : std::string("unknown")));
    }
  }
  return {TensorType(t.dtype, std::move(out), t.device)};
}

std::vector<ShapeDims> DimShuffle::infer_shape(const Node& /*node*/,
                                               const std::vector<ShapeDims>& input_shapes) const {
  ShapeDims out;
  for (int p : pattern_) {
    out.push_back(p == -1 ? Dim(1) : input_shapes.at(0).at(static_cast<std::size_t>(p)));
  }
  return {out};
}

std::vector<Variable> DimShuffle::grad(const std::vector<Variable>& inputs,
                                       const std::vector<Variable>& /*outputs*/,
                                       const std::vector<Variable>& output_grads) const {
  Variable g = output_grads.at(0);
  // The new axes are dropped again; a gradient whose type lost their static 1 is summed over them
  // first (a sum over one element), which gives the static 1 back.
  std::vector<int> loose_new_axes;
  for (std::size_t i = 0; i < pattern_.size(); ++i) {
    if (pattern_[i] == -1 && g.type().dims.at(i) != StaticDim{1}) {
      loose_new_axes.push_back(static_cast<int>(i));
    }
  }
  if (!loose_new_axes.empty()) g = sum(g, loose_new_axes, /*keepdims=*/true);
  std::vector<int> inverse(static_cast<std::size_t>(inputs.at(0).ndim()), -1);
  for (std::size_t i = 0; i < pattern_.size(); ++i) {
    if (pattern_[i] >= 0) inverse[static_cast<std::size_t>(pattern_[i])] = static_cast<int>(i);
  }
  return {dimshuffle(g, inverse)};
}

std::vector<Variable> DimShuffle::r_op(const std::vector<Variable>& /*inputs*/,
                                       const std::vector<Variable>& /*outputs*/,
                                       const std::vector<Variable>& eval_points) const {
  if (!eval_points.at(0).defined()) return {Variable()};
  return {dimshuffle(eval_points[0], pattern_)};
}

void DimShuffle::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  const Tensor& x = inputs.at(0);
  std::vector<bool> used(static_cast<std::size_t>(x.rank()), false);
  Shape dims;
  Strides strides;
  for (int p : pattern_) {
    if (p == -1) {
      dims.push_back(1);
      strides.push_back(0);
      continue;
    }
    if (p < -1 || p >= x.rank()) {
      throw ShapeError(fmt::format("{}: input has shape {}; pattern entry {} is out of range",
                                   str(), shape_str(x.shape()), p));
    }
    used[static_cast<std::size_t>(p)] = true;
    dims.push_back(x.shape()[static_cast<std::size_t>(p)]);
    strides.push_back(x.strides()[static_cast<std::size_t>(p)]);
  }
  for (int axis = 0; axis < x.rank(); ++axis) {
    if (!used[static_cast<std::size_t>(axis)] && x.shape()[static_cast<std::size_t>(axis)] != 1) {
      throw ShapeError(fmt::format("{}: input has shape {}; dropped axis {} must have size 1",
                                   str(), shape_str(x.shape()), axis));
    }
  }
  outputs.at(0) = x.as_strided(dims, strides, x.offset());
}

// ---------------------------------------------------------------------------------------------
// Flip

Flip::Flip(std::vector<int> axes) : axes_(std::move(axes)) {
  std::sort(axes_.begin(), axes_.end());
  for (std::size_t i = 0; i < axes_.size(); ++i) {
    if (axes_[i] < 0 || (i > 0 && axes_[i] == axes_[i - 1])) {
      throw ValueError(
          fmt::format("Flip: axes [{}] must be non-negative and distinct", fmt::join(axes_, ", ")));
    }
  }
}

std::string Flip::str() const {
  return fmt::format("Flip{{{}}}", fmt::join(axes_, ","));
}

bool Flip::equals(const Op& other) const {
  const auto* o = dynamic_cast<const Flip*>(&other);
  return o != nullptr && o->axes_ == axes_;
}
std::size_t Flip::hash() const {
  return hash_combine(std::hash<std::string>{}("Flip"), hash_range(axes_));
}

std::vector<TensorType> Flip::make_outputs(const std::vector<Variable>& inputs) const {
  check_input_count(*this, inputs, 1);
  const Variable& x = inputs[0];
  if (!axes_.empty() && axes_.back() >= x.ndim()) {
    throw ValueError(fmt::format("{}: axis {} is out of range for {} of type {}", str(),
                                 axes_.back(), x.label(), x.type().str()));
  }
  return {x.type()};
}

std::vector<ShapeDims> Flip::infer_shape(const Node& /*node*/,
                                         const std::vector<ShapeDims>& input_shapes) const {
  return {input_shapes.at(0)};
}

std::vector<Variable> Flip::grad(const std::vector<Variable>& /*inputs*/,
                                 const std::vector<Variable>& /*outputs*/,
                                 const std::vector<Variable>& output_grads) const {
  return {flip(output_grads.at(0), axes_)};
}

std::vector<Variable> Flip::r_op(const std::vector<Variable>& /*inputs*/,
                                 const std::vector<Variable>& /*outputs*/,
                                 const std::vector<Variable>& eval_points) const {
  if (!eval_points.at(0).defined()) return {Variable()};
  return {flip(eval_points[0], axes_)};
}

void Flip::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  Tensor out = inputs.at(0);
  for (int axis : axes_) {
    if (axis >= out.rank()) {
      throw ShapeError(fmt::format("{}: input has shape {}; axis {} is out of range", str(),
                                   shape_str(out.shape()), axis));
    }
    // Negative strides, no copy: Tensor::slice accepts a negative step and every copy or
    // contiguous() goes through the strided iterator.
    out = out.slice(axis, out.dim(axis) - 1, -1, -1);
  }
  outputs.at(0) = out;
}

// ---------------------------------------------------------------------------------------------
// Builders

Variable reshape(const Variable& x, const ShapeDims& new_shape) {
  bool all_constant = true;
  int minus_ones = 0;
  for (std::size_t i = 0; i < new_shape.size(); ++i) {
    const Dim& d = new_shape[i];
    if (d.is_unknown()) {
      throw ValueError(fmt::format(
          "reshape of {}: entry {} of the new shape is unknown; give a constant, a symbolic dim "
          "or -1",
          x.label(), i));
    }
    if (d.is_constant()) {
      if (d.value() < -1) {
        throw ValueError(fmt::format(
            "reshape of {}: entry {} of the new shape is {}; entries must be >= 0, or -1",
            x.label(), i, d.value()));
      }
      if (d.value() == -1) ++minus_ones;
    } else {
      all_constant = false;
    }
  }
  if (minus_ones > 1) {
    throw ValueError(
        fmt::format("reshape of {}: the new shape has {} entries -1; at most one may be inferred",
                    x.label(), minus_ones));
  }
  Variable target;
  if (all_constant) {
    std::vector<std::int64_t> values;
    for (const Dim& d : new_shape) values.push_back(d.value());
    target = make_constant(
        Tensor::from_vector<std::int64_t>(values, {static_cast<std::int64_t>(values.size())}));
  } else {
    target = shape_vector(new_shape);
  }
  return convgraph::apply(std::make_shared<Reshape>(static_cast<int>(new_shape.size())),
                          {x, target});
}

Variable reshape(const Variable& x, const Variable& new_shape) {
  const TensorType& t = new_shape.type();
  if (t.rank() != 1 || !is_integer(t.dtype)) {
    throw TypeError(
        fmt::format("reshape of {}: the new shape {} has type {}, expected an integer "
                    "vector",
                    x.label(), new_shape.label(), t.str()));
  }
  if (!t.dims[0]) {
    throw ValueError(fmt::format(
        "reshape of {}: the new shape {} has type {}; its length (the output rank) must be static",
        x.label(), new_shape.label(), t.str()));
  }
  const Variable target = t.dtype == DType::int64 ? new_shape : cast(new_shape, DType::int64);
  return convgraph::apply(std::make_shared<Reshape>(static_cast<int>(*t.dims[0])), {x, target});
}

Variable flatten(const Variable& x) {
  return reshape(x, ShapeDims{Dim(-1)});
}

Variable dimshuffle(const Variable& x, const std::vector<int>& pattern) {
  bool identity = static_cast<int>(pattern.size()) == x.ndim();
  for (std::size_t i = 0; i < pattern.size() && identity; ++i) {
    identity = pattern[i] == static_cast<int>(i);
  }
  if (identity) return x;
  return convgraph::apply(std::make_shared<DimShuffle>(pattern), {x});
}

Variable transpose(const Variable& x, const std::vector<int>& perm) {
  const int rank = x.ndim();
  std::vector<int> pattern;
  if (perm.empty()) {
    for (int i = rank - 1; i >= 0; --i) pattern.push_back(i);
  } else {
    if (static_cast<int>(perm.size()) != rank) {
      throw ValueError(fmt::format("transpose: [{}] is not a permutation of the {} axes of {} ({})",
                                   fmt::join(perm, ", "), rank, x.label(), x.type().str()));
    }
    pattern = normalized_axes("transpose", perm, x);
  }
  return dimshuffle(x, pattern);
}

Variable expand_dims(const Variable& x, int axis) {
  const int rank = x.ndim();
  const int a = axis < 0 ? axis + rank + 1 : axis;
  if (a < 0 || a > rank) {
    throw ValueError(
        fmt::format("expand_dims: axis {} is out of range for {} of type {} (valid: "
                    "{}..{})",
                    axis, x.label(), x.type().str(), -rank - 1, rank));
  }
  std::vector<int> pattern;
  for (int i = 0; i < a; ++i) pattern.push_back(i);
  pattern.push_back(-1);
  for (int i = a; i < rank; ++i) pattern.push_back(i);
  return dimshuffle(x, pattern);
}

Variable squeeze(const Variable& x, const std::vector<int>& axes) {
  const TensorType& t = x.type();
  std::vector<int> drop;
  if (axes.empty()) {
    // As numpy: every axis of size 1, which here means static size 1.
    for (int i = 0; i < t.rank(); ++i) {
      if (t.dims[static_cast<std::size_t>(i)] == StaticDim{1}) drop.push_back(i);
    }
  } else {
    drop = normalized_axes("squeeze", axes, x);
    for (int a : drop) {
      const StaticDim d = t.dims[static_cast<std::size_t>(a)];
      if (d != StaticDim{1}) {
        throw ValueError(fmt::format(
            "squeeze: axis {} of {} of type {} has dim {}; only axes of static dim 1 can be "
            "squeezed",
            a, x.label(), t.str(), d ? std::to_string(*d) : std::string("unknown")));
      }
    }
  }
  std::vector<int> pattern;
  for (int i = 0; i < t.rank(); ++i) {
    if (std::find(drop.begin(), drop.end(), i) == drop.end()) pattern.push_back(i);
  }
  return dimshuffle(x, pattern);
}

Variable flip(const Variable& x, const std::vector<int>& axes) {
  const std::vector<int> normalized = normalized_axes("flip", axes, x);
  if (normalized.empty()) return x;
  return convgraph::apply(std::make_shared<Flip>(normalized), {x});
}

}  // namespace convgraph
