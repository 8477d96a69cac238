// The flags of profiling: whether compiled functions collect per-op timings, and the trace file.
#pragma once

#include <vector>

#include "convgraph/base/config.hpp"

namespace convgraph {

// Appends profile and profile.trace_file to FLAGS, in display order.
void declare_profile_flags(std::vector<FlagSpec>& flags);

}  // namespace convgraph
