// The abstract convolution family: forward, gradient with respect to the inputs and gradient
// with respect to the weights, in 2-D and 3-D: their parameters, types, shapes, gradients, shape
// asserts and floating-point operation counts. These ops say what is computed; optimizer passes
// replace them with concrete implementations. Their perform() is the reference every implementation
// is checked against: direct loops, accumulating in double.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "convgraph/graph/op.hpp"
#include "convgraph/ops/conv/conv_params.hpp"

namespace convgraph {

enum class ConvDirection : unsigned char { forward, grad_inputs, grad_weights };

// Inputs by direction:
//   forward:      (image, kernel)            -> output  (B, M, o...)
//   grad_inputs:  (kernel, topgrad, shape)   -> image gradient (B, C, shape...)
//   grad_weights: (image, topgrad, shape)    -> kernel gradient (M, C/G, shape...)
//                                               (unshared: (M, o..., C/G, shape...))
// SHAPE is an int64 vector of CONVDIM spatial sizes (the image's or the kernel's).
class AbstractConv final : public Op {
 public:
  AbstractConv(ConvDirection direction, ConvParams params);

  ConvDirection direction() const { return direction_; }
  const ConvParams& params() const { return params_; }

  // "AbstractConv2d", "AbstractConv3d_gradInputs", "AbstractConv2d_gradWeights", ...
  std::string name() const override;
  std::string str() const override;
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
  // Abstract convolutions are never folded: lowering must see them.
  bool foldable() const override { return false; }
  // conv_flops, with the image, kernel and output shapes taken from where each direction has them.
  std::optional<double> flops(const std::vector<Shape>& input_shapes,
                              const std::vector<Shape>& output_shapes) const override;

 private:
  ConvDirection direction_;
  ConvParams params_;
};

// Multiply-adds times two of a direct convolution with these shapes (the same count for all
// three directions): 2 * B * M * prod(output spatial) * (C / G) * prod(kernel spatial).
double conv_flops(const ConvParams& params, const Shape& image, const Shape& kernel,
                  const Shape& output);

// Builders: validate, cast the second input to the first's dtype, and (with the flag
// conv.assert_shape) wrap the inputs in shape asserts against the imshp / kshp hints.
Variable abstract_conv(const ConvParams& params, const Variable& image, const Variable& kernel);
Variable abstract_conv_grad_inputs(const ConvParams& params, const Variable& kernel,
                                   const Variable& topgrad, const ShapeDims& image_spatial,
                                   bool add_assert_shape = true);
Variable abstract_conv_grad_weights(const ConvParams& params, const Variable& image,
                                    const Variable& topgrad, const ShapeDims& kernel_spatial,
                                    bool add_assert_shape = true);

// The reference computations on tensors (what perform() runs), for tests and DebugMode.
// IMAGE_SPATIAL / KERNEL_SPATIAL: the spatial sizes of the result.
Tensor reference_conv_forward(const ConvParams& params, const Tensor& image, const Tensor& kernel);
Tensor reference_conv_grad_inputs(const ConvParams& params, const Tensor& kernel,
                                  const Tensor& topgrad, const Shape& image_spatial);
Tensor reference_conv_grad_weights(const ConvParams& params, const Tensor& image,
                                   const Tensor& topgrad, const Shape& kernel_spatial);

// ---- shape asserts ----

// X, checked at run time against EXPECTED (unknown entries are not checked) when the flag
// conv.assert_shape is on (or FORCE is true); a mismatch raises ShapeError carrying MESSAGE.
// Returns X unchanged when nothing needs checking.
Variable assert_shape(const Variable& x, const StaticShape& expected, const std::string& message,
                      bool force = false);
// Validates a shape a convolution would produce: batch and channels >= 0, spatial dims >= 1.
// Constant entries are checked now (ValueError); symbolic ones are wrapped in asserts.
ShapeDims assert_conv_shape(const ShapeDims& shape);

}  // namespace convgraph
