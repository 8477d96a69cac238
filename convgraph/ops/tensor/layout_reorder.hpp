// LayoutReorder: a value copied from one memory layout into another (runtime/layout.hpp). The
// layout pass (optimizer/layout_pass.hpp) puts one where a value kept in a blocked layout is read
// by something that needs the logical order (a graph output, an op that does not understand the
// layout). It shows in debugprint and in profiles as "LayoutReorder{nChw8c->logical}".
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "convgraph/graph/op.hpp"
#include "convgraph/graph/variable.hpp"

namespace convgraph {

// X (in its type's layout) reordered into layout TO; X itself when it already is in TO.
Variable reorder_to(const Variable& x, Layout to);

class LayoutReorder final : public Op {
 public:
  LayoutReorder(Layout from, Layout to) : from_(from), to_(to) {}
  Layout from() const { return from_; }
  Layout to() const { return to_; }

  std::string name() const override { return "LayoutReorder"; }
  // "LayoutReorder{nChw8c->logical}" (the names for rank 4; other ranks show the generic one).
  std::string str() const override;
  bool equals(const Op& other) const override;
  std::size_t hash() const override;
  // One input on the CPU whose type's layout is FROM (TypeError otherwise), of rank 3 or more
  // with static channels, when known, a multiple of the blocks involved (ValueError); the output
  // has its type in layout TO.
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  std::vector<ShapeDims> infer_shape(const Node& node,
                                     const std::vector<ShapeDims>& input_shapes) const override;
  // The reorder back: a layout changes where the elements sit, not their values.
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const override;
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const override;
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;
  bool writes_given_outputs() const override { return true; }
  bool understands_layouts() const override { return true; }
  std::optional<double> flops(const std::vector<Shape>&, const std::vector<Shape>&) const override {
    return 0.0;
  }

 private:
  Layout from_, to_;
};

}  // namespace convgraph
