// The flag of the registry of convolution implementations: choosing implementations by name.
#pragma once

#include <vector>

#include "convgraph/base/config.hpp"

namespace convgraph {

// Appends conv.impl (read by the conv_impl selector, the lowering passes and conv_meta) to FLAGS.
void declare_conv_registry_flags(std::vector<FlagSpec>& flags);

}  // namespace convgraph
