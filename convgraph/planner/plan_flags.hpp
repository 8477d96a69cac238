// The flags of the plan builder (kept in a file of their own so that they move with it).
#pragma once

#include <vector>

#include "convgraph/base/config.hpp"

namespace convgraph {

// Appends allow_gc (whether a plan releases intermediate buffers after their last reader),
// schedule (the order of its steps), updates_inplace and memory_plan (whether calls run with a
// static memory plan) to FLAGS.
void declare_plan_flags(std::vector<FlagSpec>& flags);

}  // namespace convgraph
