// The flags of the convolution meta-optimizer (conv_meta): which candidates it times and what it
// reports.
#pragma once

#include <vector>

#include "convgraph/base/config.hpp"

namespace convgraph {

// Appends the metaopt.* flags to FLAGS, in display order.
void declare_conv_meta_flags(std::vector<FlagSpec>& flags);

}  // namespace convgraph
