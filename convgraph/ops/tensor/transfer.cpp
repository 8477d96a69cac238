#include "convgraph/ops/tensor/transfer.hpp"

#include <fmt/format.h>

namespace convgraph {

Variable transfer(const Variable& x, Device device) {
  if (x.type().device == device) return x;
  return convgraph::apply(std::make_shared<Transfer>(device), {x});
}

std::string Transfer::name() const {
  if (target_.is_cpu()) return "HostFromGpu";
  return "GpuFromHost";
}

std::string Transfer::str() const {
  return fmt::format("{}{{{}}}", name(), target_.str());
}

bool Transfer::equals(const Op& other) const {
  const auto* o = dynamic_cast<const Transfer*>(&other);
  return o != nullptr && o->target_ == target_;
}

std::size_t Transfer::hash() const {
  return hash_values(std::string("Transfer"), static_cast<int>(target_.kind), target_.index);
}

std::vector<TensorType> Transfer::make_outputs(const std::vector<Variable>& inputs) const {
  if (inputs.size() != 1) {
    throw TypeError(fmt::format("{}: expected 1 input, got {}", str(), inputs.size()));
  }
  TensorType out = inputs[0].type();
  if (out.device == target_) {
    throw ValueError(
        fmt::format("{}: input {} is already on {}", str(), inputs[0].label(), target_.str()));
  }
  out.device = target_;
  return {out};
}

std::vector<ShapeDims> Transfer::infer_shape(const Node& /*node*/,
                                             const std::vector<ShapeDims>& input_shapes) const {
  return {input_shapes.at(0)};
}

std::vector<Variable> Transfer::grad(const std::vector<Variable>& inputs,
                                     const std::vector<Variable>& /*outputs*/,
                                     const std::vector<Variable>& output_grads) const {
  return {transfer(output_grads[0], inputs[0].type().device)};
}

std::vector<Variable> Transfer::r_op(const std::vector<Variable>& /*inputs*/,
                                     const std::vector<Variable>& /*outputs*/,
                                     const std::vector<Variable>& eval_points) const {
  if (!eval_points[0].defined()) return {Variable()};
  return {transfer(eval_points[0], target_)};
}

void Transfer::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  const Tensor& x = inputs.at(0);
  // A function whose inputs live on the device receives them there already (see compile()).
  if (x.device() == target_) {
    outputs[0] = x;
    return;
  }
  outputs[0] = x.contiguous().to(target_);
}

bool is_transfer_output(const Variable& v, Variable* source) {
  Node* producer = v.owner();
  if (producer == nullptr || dynamic_cast<const Transfer*>(producer->op.get()) == nullptr) {
    return false;
  }
  if (source != nullptr) *source = producer->inputs[0];
  return true;
}

}  // namespace convgraph
