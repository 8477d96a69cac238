// ConcreteConv: what every concrete convolution op (CorrMM, OneDnnConv, GpuCorrMM, GpuDnnConv)
// shares. Each takes the same inputs and the same ConvParams as the AbstractConv it replaces, so
// the graph-level answers -- output types, shapes, gradients, R-operators, FLOPs, the reference
// for DebugMode -- are the abstract op's; a family adds its name, its input checks, its options
// and its kernel.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/kernel_op.hpp"

namespace convgraph {

class ConcreteConv : public KernelOp {
 public:
  ConcreteConv(ConvDirection direction, ConvParams params);

  ConvDirection direction() const { return direction_; }
  const ConvParams& params() const { return params_; }

  // "<name>{<params>[, <options>]}"
  std::string str() const override;
  // Same class, direction, parameters and options.
  bool equals(const Op& other) const final;
  std::size_t hash() const final;
  // The family's input checks, then the abstract op's types.
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const final;
  std::vector<ShapeDims> infer_shape(const Node& node,
                                     const std::vector<ShapeDims>& input_shapes) const final;
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const final;
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const final;
  std::optional<double> flops(const std::vector<Shape>& input_shapes,
                              const std::vector<Shape>& output_shapes) const final;
  bool foldable() const override { return false; }
  // The AbstractConv of the same direction and parameters.
  std::shared_ptr<const Op> reference_op() const final { return abstract_; }

 protected:
  // Throws (UnsupportedError, naming the input) when the implementation cannot take INPUTS:
  // dtypes, devices. Called by make_outputs before the abstract op's checks.
  virtual void check_input_types(const std::vector<Variable>& inputs) const { (void)inputs; }
  // Parameters beyond ConvParams (algorithm flags, TF32, ...): compared, hashed and shown.
  virtual bool same_options(const ConcreteConv& other) const {
    (void)other;
    return true;
  }
  virtual std::size_t options_hash() const { return 0; }
  virtual std::string options_str() const { return ""; }
  const AbstractConv& abstract() const { return *abstract_; }
  // The shapes of NODE's two tensor inputs and its spatial argument when they are all known at
  // compile time (static dims, constant shape input), for kernels that prepare per shape.
  struct StaticShapes {
    Shape a, b, spatial;
  };
  std::optional<StaticShapes> static_shapes(const Node& node) const;

 private:
  ConvDirection direction_;
  ConvParams params_;
  std::shared_ptr<const AbstractConv> abstract_;
};

}  // namespace convgraph
