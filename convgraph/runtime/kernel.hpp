// Kernel: what a plan step runs. The runtime knows kernels, not ops: ops (in ops/) create kernels
// and the optimizer puts them into a Plan.
#pragma once

#include <cstdint>
#include <optional>
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

  // ---- memory planning (runtime/memory_plan.hpp) ----
  // Whether run() writes each output into the tensor it comes in as, when that has the dtype,
  // shape, device and contiguous layout the kernel would have allocated (output_buffer() in
  // runtime/step_memory.hpp does it). Only then does the memory plan give the outputs a place in
  // its arena; a kernel that says false allocates its outputs at each call.
  virtual bool writes_given_outputs() const { return false; }
  // The bytes of temporary memory run() takes through a Workspace (runtime/step_memory.hpp) on
  // inputs of these shapes and dtypes: 0 when it takes none; std::nullopt when it cannot tell
  // without running (the plan then uses what an observed call asked for).
  virtual std::optional<std::int64_t> workspace_bytes(
      const std::vector<Shape>& input_shapes, const std::vector<DType>& input_dtypes) const {
    (void)input_shapes;
    (void)input_dtypes;
    return 0;
  }
};

}  // namespace convgraph
