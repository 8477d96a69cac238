// compile(): from symbolic inputs and outputs to a runnable Function.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "convgraph/base/config.hpp"
#include "convgraph/graph/variable.hpp"
#include "convgraph/planner/function.hpp"

namespace convgraph {

struct CompileOptions {
  // Flags for this compilation; std::nullopt means the process-wide global_config().
  std::optional<Config> config;
  // Extra flags applied on top ("key=value,key=value"), e.g. "optimizer_excluding=conv_dnn".
  std::string flags;
  // With device=cuda: whether the function takes its inputs, and returns its outputs, as tensors
  // on the device (no transfer at that edge). By default both live on the host.
  bool inputs_on_device = false;
  bool outputs_on_device = false;
};

// Compiles the graph computing OUTPUTS from INPUTS. Every variable the outputs depend on must be
// an input, a constant, or computed from them; otherwise a ValueError names the missing input.
Function compile(const std::vector<Variable>& inputs, const std::vector<Variable>& outputs,
                 const CompileOptions& options = {});

}  // namespace convgraph
