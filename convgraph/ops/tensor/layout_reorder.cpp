#include "convgraph/ops/tensor/layout_reorder.hpp"

#include <fmt/format.h>

#include "convgraph/base/error.hpp"
#include "convgraph/runtime/layout.hpp"

namespace convgraph {

Variable reorder_to(const Variable& x, Layout to) {
  if (x.type().layout == to) return x;
  return apply(std::make_shared<LayoutReorder>(x.type().layout, to), {x});
}

std::string LayoutReorder::str() const {
  return fmt::format("LayoutReorder{{{}->{}}}", layout_name(from_, 4), layout_name(to_, 4));
}

bool LayoutReorder::equals(const Op& other) const {
  const auto* o = dynamic_cast<const LayoutReorder*>(&other);
  return o != nullptr && o->from_ == from_ && o->to_ == to_;
}

std::size_t LayoutReorder::hash() const {
  return hash_values(std::string("LayoutReorder"), static_cast<int>(from_), static_cast<int>(to_));
}

std::vector<TensorType> LayoutReorder::make_outputs(const std::vector<Variable>& inputs) const {
  if (inputs.size() != 1) {
    throw ValueError(fmt::format("{}: takes 1 input, got {}", str(), inputs.size()));
  }
  const TensorType& t = inputs[0].type();
  if (t.layout != from_) {
    throw TypeError(fmt::format("{}: input {} ({}) is in layout {}, expected {}", str(),
                                inputs[0].label(), t.str(), layout_name(t.layout, t.rank()),
                                layout_name(from_, t.rank())));
  }
  if (!t.device.is_cpu()) {
    throw UnsupportedError(
        fmt::format("{}: input {} is on {}; layouts are reordered on the CPU only", str(),
                    inputs[0].label(), t.device.str()));
  }
  for (const Layout l : {from_, to_}) {
    if (l == Layout::logical) continue;
    if (t.rank() < 3) {
      throw ValueError(
          fmt::format("{}: input {} ({}) has rank {}; a blocked layout needs rank 3 "
                      "or more (batch, channels, spatial...)",
                      str(), inputs[0].label(), t.str(), t.rank()));
    }
    if (t.dims[1] && *t.dims[1] % layout_block(l) != 0) {
      throw ValueError(fmt::format("{}: input {} ({}) has {} channels; {} needs a multiple of {}",
                                   str(), inputs[0].label(), t.str(), *t.dims[1],
                                   layout_name(l, t.rank()), layout_block(l)));
    }
  }
  TensorType out = t;
  out.layout = to_;
  return {out};
}

std::vector<ShapeDims> LayoutReorder::infer_shape(
    const Node& /*node*/, const std::vector<ShapeDims>& input_shapes) const {
  return {input_shapes.at(0)};
}

std::vector<Variable> LayoutReorder::grad(const std::vector<Variable>& /*inputs*/,
                                          const std::vector<Variable>& /*outputs*/,
                                          const std::vector<Variable>& output_grads) const {
  return {reorder_to(output_grads[0], from_)};
}

std::vector<Variable> LayoutReorder::r_op(const std::vector<Variable>& /*inputs*/,
                                          const std::vector<Variable>& /*outputs*/,
                                          const std::vector<Variable>& eval_points) const {
  if (!eval_points[0].defined()) return {Variable()};
  return {reorder_to(eval_points[0], to_)};
}

void LayoutReorder::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  outputs.resize(1);
  try {
    outputs[0] = reorder_layout(inputs.at(0), from_, to_, outputs[0]);
  } catch (const ValueError& e) {
    throw ValueError(fmt::format("{}: {}", str(), e.what()));
  }
}

}  // namespace convgraph
