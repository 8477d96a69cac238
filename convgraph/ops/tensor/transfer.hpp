// Transfer: a copy of a tensor onto another device. Shown as "GpuFromHost" (onto a
// CUDA device) or "HostFromGpu" (back to the CPU), the names of the original. The device
// placement pass puts them at the edges of the part of the graph that runs on the GPU.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "convgraph/graph/op.hpp"
#include "convgraph/graph/variable.hpp"

namespace convgraph {

// X copied to DEVICE; X itself when it already lives there.
Variable transfer(const Variable& x, Device device);

class Transfer final : public Op {
 public:
  explicit Transfer(Device target) : target_(target) {}
  Device target() const { return target_; }

  // "GpuFromHost" or "HostFromGpu" (or "GpuFromGpu" between two CUDA devices).
  std::string name() const override;
  // "GpuFromHost{cuda0}"
  std::string str() const override;
  bool equals(const Op& other) const override;
  std::size_t hash() const override;
  // One input, on another device than the target; the output has its type on the target.
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  std::vector<ShapeDims> infer_shape(const Node& node,
                                     const std::vector<ShapeDims>& input_shapes) const override;
  // The gradient goes back to the input's device.
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const override;
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const override;
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;
  // Folding would move device memory into the graph at build time; the placement pass puts
  // constants on the device itself.
  bool foldable() const override { return false; }

 private:
  Device target_;
};

// Whether V is the output of a Transfer; then *SOURCE (when given) is its input.
bool is_transfer_output(const Variable& v, Variable* source = nullptr);

}  // namespace convgraph
