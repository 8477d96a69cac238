// Kernel: what a plan step runs. The runtime knows kernels, not ops: ops (in ops/) create kernels
// and the optimizer puts them into a Plan.
#pragma once

#include <string>
#include <vector>

#include "convgraph/runtime/tensor.hpp"

namespace convgraph {

class Kernel {
 public:
  virtual ~Kernel() = default;
  // Computes OUTPUTS (one per output) from INPUTS. An output comes in empty (the kernel
  // allocates it, or returns a view of an input where the op allows it), except where the plan
  // runs the step in place (PlanStep::inplace): it then comes in as one of INPUTS, whose buffer
  // nothing else holds, and a kernel of an in-place op (graph/inplace.hpp) writes into it when it
  // fits; any other kernel may simply replace it.
  virtual void run(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const = 0;
  // Which implementation this is ("Elemwise{add}", "CorrMM", ...), for profiles and errors.
  virtual std::string name() const = 0;
};

}  // namespace convgraph
