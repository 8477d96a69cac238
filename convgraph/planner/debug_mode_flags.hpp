// The flags of DebugMode: the tolerances of its comparison with the reference implementations.
#pragma once

#include <vector>

#include "convgraph/base/config.hpp"

namespace convgraph {

// Appends debugmode.rtol and debugmode.atol to FLAGS, in display order.
void declare_debug_mode_flags(std::vector<FlagSpec>& flags);

}  // namespace convgraph
