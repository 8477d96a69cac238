#include "convgraph/optimizer/gpu_placement.hpp"

#include <unordered_map>

#include "convgraph/graph/op.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/tensor/reshape.hpp"
#include "convgraph/ops/tensor/transfer.hpp"
#include "convgraph/runtime/device_backend.hpp"

namespace convgraph {
namespace {

// Whether V is computed on TARGET (and only transferred back to the host).
bool comes_from(const Variable& v, Device target) {
  Variable source;
  return is_transfer_output(v, &source) && source.type().device == target;
}

// The inputs of NODE that move to the device when the node does; empty when it stays.
std::vector<std::size_t> movable_inputs(const Node& node, Device target) {
  // Views (no computation: the same buffer seen with other strides) follow their input onto the
  // device, so that a dimshuffle or flip between two device nodes costs no transfers.
  if (dynamic_cast<const DimShuffle*>(node.op.get()) != nullptr ||
      dynamic_cast<const Flip*>(node.op.get()) != nullptr) {
    if (comes_from(node.inputs[0], target)) return {0};
    return {};
  }
  const auto* conv = dynamic_cast<const AbstractConv*>(node.op.get());
  if (conv == nullptr) return {};
  if (node.output_data[0].type.device == target) return {};
  if (!is_float(node.output_data[0].type.dtype)) return {};
  // Image / kernel / topgrad; the shape input of the gradients stays on the host.
  return {0, 1};
}

}  // namespace

void place_on_device(FunctionGraph& graph, const PassContext& ctx) {
  const Device target = parse_device(ctx.config.get("device"), "flag device");
  if (target.is_cpu()) return;
  require_device(target);

  std::unordered_map<const VariableData*, Variable> on_device;
  auto to_device = [&](const Variable& v) -> Variable {
    if (v.type().device == target) return v;
    auto it = on_device.find(v.get());
    if (it != on_device.end()) return it->second;
    Variable source, moved;
    if (is_transfer_output(v, &source) && source.type().device == target) {
      moved = source;  // HostFromGpu(x) read on the device: x itself
    } else if (v.is_constant()) {
      moved = make_constant(v.constant_value().to(target), v.name());
    } else {
      moved = transfer(v, target);
    }
    on_device.emplace(v.get(), moved);
    return moved;
  };

  // toposort() is invalidated by replace(): walk a copy; replaced nodes drop out of the graph
  // but stay alive while the copy holds them.
  std::vector<std::shared_ptr<Node>> order;
  for (Node* node : graph.toposort()) order.push_back(node->shared_from_this());
  for (const auto& node : order) {
    const std::vector<std::size_t> moving = movable_inputs(*node, target);
    if (moving.empty()) continue;
    std::vector<Variable> inputs = node->inputs;
    for (std::size_t i : moving) inputs[i] = to_device(inputs[i]);
    std::vector<Variable> outputs = convgraph::apply_multi(node->op, inputs);
    for (int k = 0; k < node->num_outputs(); ++k) {
      const Variable& moved = outputs[static_cast<std::size_t>(k)];
      // Later device nodes reading the transfer back take MOVED itself (see to_device).
      graph.replace(node->output(k), transfer(moved, Device::cpu()), "device placement");
    }
  }
}

}  // namespace convgraph
