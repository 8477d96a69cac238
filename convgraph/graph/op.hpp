// The Op interface. An op is a value with parameters: two ops with equal parameters are
// interchangeable, which is what merging equal nodes relies on.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "convgraph/graph/dim.hpp"
#include "convgraph/graph/type.hpp"
#include "convgraph/graph/variable.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph {

class Op {
 public:
  virtual ~Op() = default;

  // The op's class name ("Elemwise", "AbstractConv2d").
  virtual std::string name() const = 0;
  // The name with parameters, as debugprint shows it ("Elemwise{add}").
  virtual std::string str() const { return name(); }
  // Same class and equal parameters.
  virtual bool equals(const Op& other) const = 0;
  virtual std::size_t hash() const = 0;

  // Checks INPUTS (count, ranks, dtypes, static shapes) and returns the output types. Every user
  // error detectable from types is thrown here, naming the op, the input, the value and what was
  // expected.
  virtual std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const = 0;

  // The output shapes of NODE (an application of this op), given its input shapes. Dims may be
  // constant, symbolic or unknown; implementations combine them with the Dim arithmetic of
  // ops/tensor/shape.hpp, which folds constants. The default returns the outputs' static dims
  // (unknown where unknown), so ops whose output shape is always static need not override it.
  virtual std::vector<ShapeDims> infer_shape(const Node& node,
                                             const std::vector<ShapeDims>& input_shapes) const;

  // Reverse mode: the gradient of a scalar cost with respect to each input, given the gradient
  // with respect to each output (all defined: missing ones are zero-filled by the caller).
  // Returns one entry per input: a gradient, an undefined Variable (the input is disconnected: its
  // gradient is zero), or a grad_undefined marker (the gradient does not exist).
  // The default marks every input as having no gradient.
  virtual std::vector<Variable> grad(const std::vector<Variable>& inputs,
                                     const std::vector<Variable>& outputs,
                                     const std::vector<Variable>& output_grads) const;

  // Forward mode: the directional derivative of each output when the inputs move along
  // EVAL_POINTS (an undefined entry means that input does not move). The default throws
  // UnsupportedError naming the op.
  virtual std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                                     const std::vector<Variable>& outputs,
                                     const std::vector<Variable>& eval_points) const;

  // The reference implementation: slow where it must be, obviously correct, CPU only. It
  // allocates OUTPUTS (passed in empty, one per output) and never writes to its inputs.
  virtual void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const = 0;

  // Whether perform() writes each output into the tensor it comes in as when that has the dtype,
  // shape, device and contiguous layout perform() would allocate (Kernel::writes_given_outputs):
  // what lets the memory plan place its outputs in its arena.
  virtual bool writes_given_outputs() const { return false; }

  // Output I may be a view of input J, for each pair (I, J) returned.
  virtual std::vector<std::pair<int, int>> view_map() const { return {}; }
  // Whether the op takes inputs in a layout other than the logical one (runtime/layout.hpp) and
  // checks them in make_outputs. make_node refuses a non-logical input of any other op
  // (TypeError): every op reads the logical order unless it says otherwise.
  virtual bool understands_layouts() const { return false; }
  // Whether constant folding may evaluate this op at compile time.
  virtual bool foldable() const { return true; }
  // Floating-point operations of one application to inputs and outputs of these shapes, for
  // profiles (GFLOP/s). std::nullopt when the op does not count them: the profile then shows no
  // rate rather than a wrong one. Concrete ops answer as the op they replace.
  virtual std::optional<double> flops(const std::vector<Shape>& input_shapes,
                                      const std::vector<Shape>& output_shapes) const {
    (void)input_shapes;
    (void)output_shapes;
    return std::nullopt;
  }
};

// Helpers for implementing equals() and hash().
inline std::size_t hash_combine(std::size_t seed, std::size_t value) {
  return seed ^ (value + 0x9e3779b97f4a7c15ull + (seed << 6) + (seed >> 2));
}
template <typename... Ts>
std::size_t hash_values(const Ts&... values) {
  std::size_t seed = 0;
  ((seed = hash_combine(seed, std::hash<Ts>{}(values))), ...);
  return seed;
}
template <typename T>
std::size_t hash_range(const std::vector<T>& values) {
  std::size_t seed = values.size();
  for (const auto& v : values) seed = hash_combine(seed, std::hash<T>{}(v));
  return seed;
}

}  // namespace convgraph
