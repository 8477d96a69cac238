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
  // Computes OUTPUTS (passed in empty, one per output; the kernel allocates them, or returns
  // views of its inputs where the op allows it) from INPUTS.
  virtual void run(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const = 0;
  // Which implementation this is ("Elemwise{add}", "CorrMM", ...), for profiles and errors.
  virtual std::string name() const = 0;
};

}  // namespace convgraph
