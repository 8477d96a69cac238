// Convolution epilogues: what a forward convolution's output goes through before it is written,
// folded into the convolution node so that the output is touched once while it is in cache
// instead of once per elementwise op. The ResNet pattern relu(conv(x, w) + b + shortcut) becomes
// one node with the epilogue "bias+add+relu".
//
// In order, each step optional:
//   bias:      + b[k] on output channel k (b a vector of the output's channel count),
//   residual:  + r, a tensor of the output's shape ("add" in the node's label),
//   relu:      max(., 0), NaN staying NaN as the elementwise relu.
// Each step rounds to the output's dtype, as the separate elementwise nodes did.
//
// ConvEpilogueReference is the graph-level meaning of such a node: the reference convolution then
// the steps above, with the types, shapes and gradient of the unfused graph. A concrete node with
// an epilogue (ops/concrete_conv.hpp) answers with it, and DebugMode compares against it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "convgraph/graph/op.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph {

struct ConvEpilogue {
  bool bias = false;
  bool residual = false;
  bool relu = false;

  bool empty() const { return !bias && !residual && !relu; }
  // The inputs it adds after the image and the kernel: the bias, then the residual.
  int extra_inputs() const { return (bias ? 1 : 0) + (residual ? 1 : 0); }
  // "bias+add+relu", "bias", "add+relu"; "none" when empty.
  std::string str() const;
  std::size_t hash() const;
  bool operator==(const ConvEpilogue&) const = default;
};

// The epilogue's tensors of one call (undefined where the epilogue has no such step).
struct ConvEpilogueArgs {
  Tensor bias;
  Tensor residual;
};

// Run-time checks of ARGS for an output of shape RESULT and dtype DTYPE on DEVICE, naming FN:
// the bias a vector of RESULT[1] elements, the residual of shape RESULT, both of DTYPE on DEVICE.
// ShapeError, TypeError or ValueError before anything is written.
void check_conv_epilogue_args(const std::string& fn, const ConvEpilogue& epilogue,
                              const ConvEpilogueArgs& args, const Shape& result, DType dtype,
                              Device device);

// Applies EPILOGUE to OUT (a contiguous forward result on the CPU, checked ARGS) in place: one
// pass over it. The fallback of implementations that do not apply it while the output is in cache.
void apply_conv_epilogue(const ConvEpilogue& epilogue, const ConvEpilogueArgs& args, Tensor& out);

// The epilogue on a block of a contiguous forward output: ROWS channels (the first at bias
// element 0 of BIAS) of COLUMNS positions each, row I starting at OUT + I * LD; RESIDUAL (or null)
// laid out as OUT. For implementations that apply it to a tile they just computed.
template <typename T>
inline void apply_conv_epilogue_block(const ConvEpilogue& epilogue, T* out, std::int64_t ld,
                                      std::int64_t rows, std::int64_t columns, const T* bias,
                                      const T* residual) {
  for (std::int64_t i = 0; i < rows; ++i) {
    T* o = out + i * ld;
    // One loop per combination keeps each one branch-free, so that it vectorises.
    const T b = epilogue.bias ? bias[i] : T(0);
    const T* r = epilogue.residual ? residual + i * ld : nullptr;
    if (epilogue.bias && r != nullptr) {
      for (std::int64_t j = 0; j < columns; ++j) o[j] = static_cast<T>(o[j] + b) + r[j];
    } else if (epilogue.bias) {
      for (std::int64_t j = 0; j < columns; ++j) o[j] = o[j] + b;
    } else if (r != nullptr) {
      for (std::int64_t j = 0; j < columns; ++j) o[j] = o[j] + r[j];
    }
    if (epilogue.relu) {
      for (std::int64_t j = 0; j < columns; ++j) o[j] = o[j] < T(0) ? T(0) : o[j];
    }
  }
}

// The meaning of a forward convolution with an epilogue. Inputs: (image, kernel, then the bias
// when EPILOGUE has one, then the residual when it has one). The output has the forward
// convolution's type.
class ConvEpilogueReference final : public Op {
 public:
  ConvEpilogueReference(ConvParams params, ConvEpilogue epilogue);

  const ConvParams& params() const { return conv_->params(); }
  const ConvEpilogue& epilogue() const { return epilogue_; }

  // "AbstractConv2dEpilogue", "AbstractConv3dEpilogue"
  std::string name() const override;
  // "AbstractConv2dEpilogue{<params>, epilogue=bias+relu}"
  std::string str() const override;
  bool equals(const Op& other) const override;
  std::size_t hash() const override;
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  std::vector<ShapeDims> infer_shape(const Node& node,
                                     const std::vector<ShapeDims>& input_shapes) const override;
  // The unfused graph's: the ReLU's from the output, then the convolution's, the bias's (a sum
  // over the batch and spatial axes) and the residual's (the pre-activation's gradient itself).
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const override;
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const override;
  // The abstract convolution's perform, then the epilogue.
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;
  bool foldable() const override { return false; }
  std::optional<double> flops(const std::vector<Shape>& input_shapes,
                              const std::vector<Shape>& output_shapes) const override;

  // The type checks of the epilogue's inputs against the convolution's output type OUT, naming
  // FN (shared with the concrete ops): ValueError for a wrong input count, TypeError for a rank,
  // dtype or device, ShapeError for a static dim that contradicts OUT.
  static void check_inputs(const std::string& fn, const ConvEpilogue& epilogue,
                           const std::vector<Variable>& inputs, const TensorType& out);

 private:
  std::shared_ptr<const AbstractConv> conv_;
  ConvEpilogue epilogue_;
};

// Builds the epilogue node's graph meaning from its parts, for tests and the concrete ops:
// ConvEpilogueReference applied to INPUTS.
Variable conv_with_epilogue(const ConvParams& params, const ConvEpilogue& epilogue,
                            const std::vector<Variable>& inputs);

}  // namespace convgraph
