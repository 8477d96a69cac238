// The flags of the on-disk autotune cache: whether it is read and written, and where it lives.
#pragma once

#include <vector>

#include "convgraph/base/config.hpp"

namespace convgraph {

// Appends autotune.cache and autotune.cache_path to FLAGS, in display order.
void declare_autotune_cache_flags(std::vector<FlagSpec>& flags);

}  // namespace convgraph
