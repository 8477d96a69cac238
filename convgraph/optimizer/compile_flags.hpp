// The flags of compile(): the compilation mode and the device compiled functions run on.
#pragma once

#include <vector>

#include "convgraph/base/config.hpp"

namespace convgraph {

// Appends mode (read by the pass database and compile()) and device (read by the GPU placement
// pass) to FLAGS, in display order.
void declare_compile_flags(std::vector<FlagSpec>& flags);

}  // namespace convgraph
