// compile(): from symbolic inputs and outputs to a runnable Function.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "convgraph/base/config.hpp"
#include "convgraph/graph/variable.hpp"
#include "convgraph/planner/function.hpp"

namespace convgraph {

// An update of a shared variable (CompileOptions::updates): after each successful call, VARIABLE
// holds the value VALUE had in that call.
struct Update {
  Variable variable;  // a shared variable (graph/shared.hpp)
  Variable value;     // its new value: same dtype, rank and (where known) shape
};

struct CompileOptions {
  // Flags for this compilation; std::nullopt means the process-wide global_config().
  std::optional<Config> config;
  // Extra flags applied on top ("key=value,key=value"), e.g. "optimizer_excluding=conv_dnn".
  std::string flags;
  // With device=cuda: whether the function takes its inputs, and returns its outputs, as tensors
  // on the device (no transfer at that edge). By default both live on the host.
  bool inputs_on_device = false;
  bool outputs_on_device = false;
  // Shared variables to replace after each call, as theano.function's updates: every value is
  // computed from the values held at the start of the call (so {{a, b}, {b, a}} swaps them), and
  // none changes when the call throws. Checked here: each VARIABLE shared and updated once, each
  // VALUE of its dtype, device, rank and static dims (TypeError / ShapeError / ValueError naming
  // the variable); dims known only at run time are checked after the call, before any value
  // changes.
  std::vector<Update> updates;
};

// Compiles the graph computing OUTPUTS from INPUTS. Every variable the outputs depend on must be
// an input, a constant, a shared variable, or computed from them; otherwise a ValueError names
// the missing input. Shared variables the outputs or updates read are implicit inputs, fed from
// their values at each call; giving one in INPUTS is a ValueError (as in Theano).
Function compile(const std::vector<Variable>& inputs, const std::vector<Variable>& outputs,
                 const CompileOptions& options = {});

}  // namespace convgraph
