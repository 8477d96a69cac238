// KernelOp: an op that brings its own kernel (a concrete implementation that the optimizer
// chose). Ops that are not KernelOps run their reference perform() through a PerformKernel.
#pragma once

#include <memory>
#include <string>

#include "convgraph/graph/op.hpp"
#include "convgraph/runtime/kernel.hpp"

namespace convgraph {

class KernelOp : public Op {
 public:
  // The kernel that runs NODE (an application of this op). Called once per compiled node, so
  // per-node setup (library primitives, workspace sizes) belongs here, not in Kernel::run.
  virtual std::shared_ptr<const Kernel> make_kernel(const Node& node) const = 0;
  // The op whose reference perform() computes the same outputs from the same inputs (the
  // abstract op this implementation replaced), for DebugMode; null when there is none.
  virtual std::shared_ptr<const Op> reference_op() const { return nullptr; }
  // What a profile names as the implementation that ran the node: the op's name unless the op
  // has more to say (a fused node adds the back end its kernel runs on).
  virtual std::string implementation_name() const { return name(); }
};

// Runs an op's perform().
class PerformKernel final : public Kernel {
 public:
  explicit PerformKernel(std::shared_ptr<const Op> op) : op_(std::move(op)) {}
  void run(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override {
    op_->perform(inputs, outputs);
  }
  std::string name() const override { return op_->str(); }
  bool writes_given_outputs() const override { return op_->writes_given_outputs(); }

 private:
  std::shared_ptr<const Op> op_;
};

// The kernel for NODE: its own if the op is a KernelOp, else a PerformKernel.
std::shared_ptr<const Kernel> kernel_for(const Node& node);

}  // namespace convgraph
