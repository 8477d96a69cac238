#include "convgraph/planner/plan_flags.hpp"

#include "convgraph/base/flag_builders.hpp"

namespace convgraph {

void declare_plan_flags(std::vector<FlagSpec>& flags) {
  flags.push_back(
      boolean_flag("allow_gc", "True", "Release intermediate buffers after their last reader"));
  flags.push_back(choice_flag(
      "schedule", "memory", {"memory", "graph"},
      "The order a function runs its nodes in: memory (a list schedule keeping few bytes alive) "
      "or graph (the graph's depth-first topological order)"));
  flags.push_back(choice_flag(
      "updates_inplace", "atomic", {"atomic", "early"},
      "Where updates of shared variables are computed: atomic (into new buffers, stored when the "
      "call succeeds: a call that fails changes no shared variable) or early (into the shared "
      "variable's own buffer as soon as its old value is no longer read: a call that fails "
      "after that leaves the variables updated so far at their new values, and says which)"));
  flags.push_back(boolean_flag(
      "memory_plan", "True",
      "Run calls with a static memory plan: intermediates and kernel workspaces at offsets of one "
      "arena per device, computed from their lifetimes (docs/runtime.md)"));
}

}  // namespace convgraph
