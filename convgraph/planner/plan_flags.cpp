#include "convgraph/planner/plan_flags.hpp"

#include "convgraph/base/flag_builders.hpp"

namespace convgraph {

void declare_plan_flags(std::vector<FlagSpec>& flags) {
  flags.push_back(
      boolean_flag("allow_gc", "True", "Release intermediate buffers after their last reader"));
}

}  // namespace convgraph
