// Concatenation and padding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "convgraph/graph/dim.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/graph/variable.hpp"

namespace convgraph {

// Joins INPUTS (same dtype and rank, equal dims except along AXIS) along AXIS.
Variable concatenate(const std::vector<Variable>& inputs, int axis);

enum class PadMode { constant, edge };
// PADS[i] = (before, after) for axis i (non-negative); constant mode fills with VALUE, edge mode
// replicates the border element (the axis must then be non-empty).
Variable pad(const Variable& x, const std::vector<std::pair<std::int64_t, std::int64_t>>& pads,
             PadMode mode = PadMode::constant, double value = 0.0);

// ---- the ops (for passes that match them; users call the functions above) ----

// Concatenation along AXIS (non-negative) of one or more inputs of equal dtype and rank.
class Join final : public Op {
 public:
  explicit Join(int axis);
  int axis() const { return axis_; }
  std::string name() const override { return "Join"; }
  std::string str() const override;  // "Join{1}"
  bool equals(const Op& other) const override;
  std::size_t hash() const override;
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  std::vector<ShapeDims> infer_shape(const Node& node,
                                     const std::vector<ShapeDims>& input_shapes) const override;
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const override;
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const override;
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;
  bool writes_given_outputs() const override { return true; }

 private:
  int axis_;
};

// Padding with a constant or by replicating the border element, PADS[i] = (before, after) >= 0
// for every axis.
class Pad final : public Op {
 public:
  Pad(std::vector<std::pair<std::int64_t, std::int64_t>> pads, PadMode mode, double value);
  const std::vector<std::pair<std::int64_t, std::int64_t>>& pads() const { return pads_; }
  PadMode mode() const { return mode_; }
  double value() const { return value_; }
  std::string name() const override { return "Pad"; }
  std::string str() const override;  // "Pad{constant=0; (1, 1), (0, 2)}", "Pad{edge; (1, 1)}"
  bool equals(const Op& other) const override;
  std::size_t hash() const override;
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  std::vector<ShapeDims> infer_shape(const Node& node,
                                     const std::vector<ShapeDims>& input_shapes) const override;
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const override;
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const override;
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;

 private:
  std::vector<std::pair<std::int64_t, std::int64_t>> pads_;
  PadMode mode_;
  double value_;
};

}  // namespace convgraph
