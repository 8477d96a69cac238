#include "convgraph/ops/kernel_op.hpp"

namespace convgraph {

std::shared_ptr<const Kernel> kernel_for(const Node& node) {
  if (const auto* concrete = dynamic_cast<const KernelOp*>(node.op.get())) {
    return concrete->make_kernel(node);
  }
  return std::make_shared<PerformKernel>(node.op);
}

}  // namespace convgraph
