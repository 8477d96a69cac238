// ReferenceConv: the abstract convolution's own direct loops (its perform(), accumulating in
// double) as a concrete implementation, so that a graph can ask for the ground truth by name
// (conv.impl=reference) like any other implementation. Slow by design; the registry row gives it
// no lowering pass and keeps it out of the meta-optimizer's candidates.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "convgraph/ops/concrete_conv.hpp"
#include "convgraph/ops/conv/conv_implementation.hpp"

namespace convgraph {

// Inputs and outputs as AbstractConv, on the CPU, in any floating dtype.
class ReferenceConv final : public ConcreteConv {
 public:
  using ConcreteConv::ConcreteConv;

  // "ReferenceConv2d", "ReferenceConv3d_gradWeights", ...
  std::string name() const override;
  std::string implementation() const override { return "reference"; }
  // Any floating dtype, on the CPU.
  ConcreteConvRequirements requirements() const override;

 protected:
  std::shared_ptr<ConcreteConvKernelBase> make_conv_kernel(std::string name) const override;
};

// The registry row's hooks: every problem on the CPU with floating dtypes.
ConvImplementationHooks reference_conv_hooks();

}  // namespace convgraph
