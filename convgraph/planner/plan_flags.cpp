#include "convgraph/planner/plan_flags.hpp"

#include "convgraph/base/flag_builders.hpp"

namespace convgraph {

void declare_plan_flags(std::vector<FlagSpec>& flags) {
  flags.push_back(
      boolean_flag("allow_gc", "True", "Release intermediate buffers after their last reader"));
  flags.push_back(boolean_flag(
      "memory_plan", "True",
      "Run calls with a static memory plan: intermediates and kernel workspaces at offsets of one "
      "arena per device, computed from their lifetimes (docs/runtime.md)"));
}

}  // namespace convgraph
