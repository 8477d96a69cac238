#include "convgraph/ops/tensor/join.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <optional>

#include "convgraph/ops/tensor/alloc.hpp"
#include "convgraph/ops/tensor/reduce.hpp"
#include "convgraph/ops/tensor/shape.hpp"
#include "convgraph/ops/tensor/subtensor.hpp"
#include "convgraph/runtime/step_memory.hpp"

namespace convgraph {
namespace {

void check_input_count(const Op& op, const std::vector<Variable>& inputs, std::size_t expected) {
  if (inputs.size() != expected) {
    throw ValueError(
        fmt::format("{}: expected {} input(s), got {}", op.str(), expected, inputs.size()));
  }
}

// Index items that leave the axes before AXIS whole and apply ITEM to AXIS.
std::vector<IndexItem> on_axis(int axis, const IndexItem& item) {
  std::vector<IndexItem> items(static_cast<std::size_t>(axis), IndexItem::all());
  items.push_back(item);
  return items;
}

std::optional<Dim> bound(std::int64_t v, bool present) {
  return present ? std::optional<Dim>(Dim(v)) : std::nullopt;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Join

Join::Join(int axis) : axis_(axis) {
  if (axis < 0) throw ValueError(fmt::format("Join: axis must be non-negative, got {}", axis));
}

std::string Join::str() const {
  return fmt::format("Join{{{}}}", axis_);
}

bool Join::equals(const Op& other) const {
  const auto* o = dynamic_cast<const Join*>(&other);
  return o != nullptr && o->axis_ == axis_;
}
std::size_t Join::hash() const {
  return hash_values(std::string("Join"), axis_);
}

std::vector<TensorType> Join::make_outputs(const std::vector<Variable>& inputs) const {
  if (inputs.empty()) throw ValueError(fmt::format("{}: nothing to concatenate", str()));
  const TensorType& first = inputs[0].type();
  if (axis_ >= first.rank()) {
    throw ValueError(fmt::format("{}: axis {} is out of range for {} of type {}", str(), axis_,
                                 inputs[0].label(), first.str()));
  }
  for (std::size_t i = 1; i < inputs.size(); ++i) {
    const TensorType& t = inputs[i].type();
    if (t.dtype != first.dtype || t.rank() != first.rank() || t.device != first.device) {
      throw TypeError(fmt::format(
          "{}: input {} ({}) has type {}, but input 0 ({}) has type {}; all inputs need the same "
          "dtype, rank and device",
          str(), i, inputs[i].label(), t.str(), inputs[0].label(), first.str()));
    }
  }
  StaticShape out(first.dims.size());
  for (std::size_t axis = 0; axis < out.size(); ++axis) {
    if (static_cast<int>(axis) == axis_) {
      std::int64_t total = 0;
      bool known = true;
      for (const Variable& in : inputs) {
        const StaticDim d = in.type().dims[axis];
        if (d) {
          total += *d;
        } else {
          known = false;
        }
      }
      if (known) out[axis] = total;
      continue;
    }
    std::size_t known_at = 0;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const StaticDim d = inputs[i].type().dims[axis];
      if (!d) continue;
      if (out[axis] && *out[axis] != *d) {
        throw ShapeError(
            fmt::format("{}: input {} ({}) has type {} and input {} ({}) has type {}; all dims but "
                        "axis {} must "
                        "agree",
                        str(), known_at, inputs[known_at].label(), inputs[known_at].type().str(), i,
                        inputs[i].label(), inputs[i].type().str(), axis_));
      }
      if (!out[axis]) {
        out[axis] = d;
        known_at = i;
      }
    }
  }
  return {TensorType(first.dtype, std::move(out), first.device)};
}

std::vector<ShapeDims> Join::infer_shape(const Node& /*node*/,
                                         const std::vector<ShapeDims>& input_shapes) const {
  const std::size_t rank = input_shapes.at(0).size();
  ShapeDims out(rank);
  for (std::size_t axis = 0; axis < rank; ++axis) {
    if (static_cast<int>(axis) == axis_) {
      Dim total(0);
      for (const ShapeDims& s : input_shapes) total = total + s.at(axis);
      out[axis] = total;
      continue;
    }
    // Any input's dim will do (they agree); a constant one saves a Shape_i at run time.
    out[axis] = input_shapes[0].at(axis);
    for (const ShapeDims& s : input_shapes) {
      if (s.at(axis).is_constant()) {
        out[axis] = s[axis];
        break;
      }
    }
  }
  return {out};
}

std::vector<Variable> Join::grad(const std::vector<Variable>& inputs,
                                 const std::vector<Variable>& /*outputs*/,
                                 const std::vector<Variable>& output_grads) const {
  const Variable& g = output_grads.at(0);
  std::vector<Variable> result;
  Dim start(0);
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Dim stop = start + Dim(shape_i(inputs[i], axis_));
    // Absent bounds where they can be: the first slice starts at 0, the last runs to the end.
    IndexItem item = IndexItem::all();
    if (!(start.is_constant() && start.value() == 0)) item.start.emplace(start);
    if (i + 1 < inputs.size()) item.stop.emplace(stop);
    result.push_back(subtensor(g, on_axis(axis_, item)));
    start = stop;
  }
  return result;
}

std::vector<Variable> Join::r_op(const std::vector<Variable>& inputs,
                                 const std::vector<Variable>& /*outputs*/,
                                 const std::vector<Variable>& eval_points) const {
  bool any = false;
  for (const Variable& e : eval_points) any = any || e.defined();
  if (!any) return {Variable()};
  std::vector<Variable> parts;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const bool moves = i < eval_points.size() && eval_points[i].defined();
    parts.push_back(moves ? eval_points[i] : zeros_like(inputs[i]));
  }
  return {concatenate(parts, axis_)};
}

void Join::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  if (inputs.empty()) throw ValueError(fmt::format("{}: nothing to concatenate", str()));
  const Tensor& first = inputs[0];
  if (axis_ >= first.rank()) {
    throw ShapeError(fmt::format("{}: axis {} is out of range for input 0 of shape {}", str(),
                                 axis_, shape_str(first.shape())));
  }
  Shape out_shape = first.shape();
  out_shape[static_cast<std::size_t>(axis_)] = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    if (t.dtype() != first.dtype()) {
      throw TypeError(fmt::format("{}: input {} has dtype {}, but input 0 has dtype {}", str(), i,
                                  dtype_name(t.dtype()), dtype_name(first.dtype())));
    }
    bool agree = t.rank() == first.rank();
    for (int axis = 0; agree && axis < t.rank(); ++axis) {
      agree = axis == axis_ || t.shape()[static_cast<std::size_t>(axis)] ==
                                   first.shape()[static_cast<std::size_t>(axis)];
    }
    if (!agree) {
      throw ShapeError(fmt::format(
          "{}: input {} has shape {}, but input 0 has shape {}; all dims but axis {} must agree",
          str(), i, shape_str(t.shape()), shape_str(first.shape()), axis_));
    }
    out_shape[static_cast<std::size_t>(axis_)] += t.dim(axis_);
  }
  Tensor out = output_buffer(outputs.at(0), first.dtype(), out_shape, first.device());
  std::int64_t offset = 0;
  for (const Tensor& t : inputs) {
    const std::int64_t n = t.dim(axis_);
    out.slice(axis_, offset, offset + n, 1).copy_from(t);
    offset += n;
  }
  outputs.at(0) = out;
}

// ---------------------------------------------------------------------------------------------
// Pad

Pad::Pad(std::vector<std::pair<std::int64_t, std::int64_t>> pads, PadMode mode, double value)
    : pads_(std::move(pads)), mode_(mode), value_(mode == PadMode::constant ? value : 0.0) {
  for (std::size_t i = 0; i < pads_.size(); ++i) {
    if (pads_[i].first < 0 || pads_[i].second < 0) {
      throw ValueError(fmt::format("Pad: pads ({}, {}) of axis {} must be non-negative",
                                   pads_[i].first, pads_[i].second, i));
    }
  }
}

std::string Pad::str() const {
  std::vector<std::string> parts;
  for (const auto& [before, after] : pads_) parts.push_back(fmt::format("({}, {})", before, after));
  const std::string mode =
      mode_ == PadMode::constant ? fmt::format("constant={}", value_) : std::string("edge");
  return fmt::format("Pad{{{}; {}}}", mode, fmt::join(parts, ", "));
}

bool Pad::equals(const Op& other) const {
  const auto* o = dynamic_cast<const Pad*>(&other);
  return o != nullptr && o->pads_ == pads_ && o->mode_ == mode_ && o->value_ == value_;
}
std::size_t Pad::hash() const {
  std::size_t seed = hash_values(std::string("Pad"), static_cast<int>(mode_), value_);
  for (const auto& [before, after] : pads_) seed = hash_combine(seed, hash_values(before, after));
  return seed;
}

std::vector<TensorType> Pad::make_outputs(const std::vector<Variable>& inputs) const {
  check_input_count(*this, inputs, 1);
  const Variable& x = inputs[0];
  const TensorType& t = x.type();
  if (static_cast<int>(pads_.size()) != t.rank()) {
    throw ValueError(fmt::format("{}: {} (before, after) pairs given for {} of type {} (rank {})",
                                 str(), pads_.size(), x.label(), t.str(), t.rank()));
  }
  StaticShape out = t.dims;
  for (std::size_t axis = 0; axis < out.size(); ++axis) {
    const auto [before, after] = pads_[axis];
    if (mode_ == PadMode::edge && out[axis] == StaticDim{0} && before + after > 0) {
      throw ValueError(
          fmt::format("{}: axis {} of {} ({}) is empty; edge padding needs an element to replicate",
                      str(), axis, x.label(), t.str()));
    }
    if (out[axis]) *out[axis] += before + after;
  }
  return {TensorType(t.dtype, std::move(out), t.device)};
}

std::vector<ShapeDims> Pad::infer_shape(const Node& /*node*/,
                                        const std::vector<ShapeDims>& input_shapes) const {
  ShapeDims out = input_shapes.at(0);
  for (std::size_t axis = 0; axis < out.size() && axis < pads_.size(); ++axis) {
    out[axis] = out[axis] + Dim(pads_[axis].first + pads_[axis].second);
  }
  return {out};
}

std::vector<Variable> Pad::grad(const std::vector<Variable>& /*inputs*/,
                                const std::vector<Variable>& /*outputs*/,
                                const std::vector<Variable>& output_grads) const {
  const Variable& g = output_grads.at(0);
  const int rank = static_cast<int>(pads_.size());
  if (mode_ == PadMode::constant) {
    // The padding is a constant: the gradient is the interior of G. Slicing to -after avoids
    // needing the input's size.
    std::vector<IndexItem> items;
    for (const auto& [before, after] : pads_) {
      items.push_back(IndexItem::slice(bound(before, before > 0), bound(-after, after > 0)));
    }
    return {subtensor(g, items)};
  }
  // Edge mode: each border element receives its own gradient plus that of every copy made of it.
  // Axis by axis, the border slabs of G are summed onto the first and last interior slab; later
  // axes then see the already accumulated slabs, which takes care of the corners.
  Variable t = g;
  for (int axis = 0; axis < rank; ++axis) {
    const auto [before, after] = pads_[static_cast<std::size_t>(axis)];
    if (before == 0 && after == 0) continue;
    Variable core = subtensor(
        t, on_axis(axis, IndexItem::slice(bound(before, before > 0), bound(-after, after > 0))));
    if (before > 0) {
      const Variable border = sum(
          subtensor(t, on_axis(axis, IndexItem::slice(std::nullopt, Dim(before)))), {axis}, true);
      core = inc_subtensor(core, on_axis(axis, IndexItem::slice(std::nullopt, Dim(1))), border);
    }
    if (after > 0) {
      const Variable border = sum(
          subtensor(t, on_axis(axis, IndexItem::slice(Dim(-after), std::nullopt))), {axis}, true);
      core = inc_subtensor(core, on_axis(axis, IndexItem::slice(Dim(-1), std::nullopt)), border);
    }
    t = core;
  }
  return {t};
}

std::vector<Variable> Pad::r_op(const std::vector<Variable>& /*inputs*/,
                                const std::vector<Variable>& /*outputs*/,
                                const std::vector<Variable>& eval_points) const {
  if (!eval_points.at(0).defined()) return {Variable()};
  // The padding constant does not move; replicated borders move with the elements they copy.
  return {pad(eval_points[0], pads_, mode_, 0.0)};
}

void Pad::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  const Tensor& x = inputs.at(0);
  if (static_cast<int>(pads_.size()) != x.rank()) {
    throw ShapeError(fmt::format("{}: input has shape {}, expected rank {}", str(),
                                 shape_str(x.shape()), pads_.size()));
  }
  Shape out_shape = x.shape();
  for (std::size_t axis = 0; axis < out_shape.size(); ++axis) {
    const auto [before, after] = pads_[axis];
    if (mode_ == PadMode::edge && x.shape()[axis] == 0 && before + after > 0) {
      throw ShapeError(fmt::format(
          "{}: input has shape {}; axis {} is empty and edge padding needs an element to replicate",
          str(), shape_str(x.shape()), axis));
    }
    out_shape[axis] += before + after;
  }
  Tensor out = mode_ == PadMode::constant ? Tensor::full(x.dtype(), out_shape, value_)
                                          : Tensor::empty(x.dtype(), out_shape, x.device());
  const auto interior = [&](Tensor view, std::size_t from_axis) {
    for (std::size_t axis = from_axis; axis < pads_.size(); ++axis) {
      const std::int64_t before = pads_[axis].first;
      view = view.slice(static_cast<int>(axis), before, before + x.shape()[axis], 1);
    }
    return view;
  };
  interior(out, 0).copy_from(x);
  if (mode_ == PadMode::edge) {
    // Axis by axis: axes before AXIS are already padded (so corners get replicated too), axes after
    // it are restricted to their interior.
    for (std::size_t axis = 0; axis < pads_.size(); ++axis) {
      const auto [before, after] = pads_[axis];
      const auto a = static_cast<int>(axis);
      const Tensor view = interior(out, axis + 1);
      const std::int64_t n = x.shape()[axis];
      const auto replicate = [&](std::int64_t dst_start, std::int64_t dst_stop, std::int64_t src) {
        Tensor dst = view.slice(a, dst_start, dst_stop, 1);
        const Tensor edge = view.slice(a, src, src + 1, 1);
        Strides strides = edge.strides();
        strides[axis] = 0;
        dst.copy_from(edge.as_strided(dst.shape(), strides, edge.offset()));
      };
      if (before > 0) replicate(0, before, before);
      if (after > 0) replicate(before + n, before + n + after, before + n - 1);
    }
  }
  outputs.at(0) = out;
}

// ---------------------------------------------------------------------------------------------
// Builders

Variable concatenate(const std::vector<Variable>& inputs, int axis) {
  if (inputs.empty()) throw ValueError("concatenate: no inputs given");
  const int rank = inputs[0].ndim();
  const int a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) {
    throw ValueError(fmt::format("concatenate: axis {} is out of range for {} of type {}", axis,
                                 inputs[0].label(), inputs[0].type().str()));
  }
  return convgraph::apply(std::make_shared<Join>(a), inputs);
}

Variable pad(const Variable& x, const std::vector<std::pair<std::int64_t, std::int64_t>>& pads,
             PadMode mode, double value) {
  if (static_cast<int>(pads.size()) != x.ndim()) {
    throw ValueError(fmt::format("pad: {} (before, after) pairs given for {} of type {} (rank {})",
                                 pads.size(), x.label(), x.type().str(), x.ndim()));
  }
  auto op = std::make_shared<Pad>(pads, mode, value);  // validates the pads
  bool any = false;
  for (const auto& [before, after] : pads) any = any || before > 0 || after > 0;
  if (!any) return x;
  return convgraph::apply(std::move(op), {x});
}

}  // namespace convgraph
