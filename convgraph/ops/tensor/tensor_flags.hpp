// The flags of the tensor ops: the dtype given to scalars and constants built without one.
#pragma once

#include <vector>

#include "convgraph/base/config.hpp"

namespace convgraph {

// Appends floatX (read when elementwise, reduction and composite convolution functions build
// constants) to FLAGS.
void declare_tensor_flags(std::vector<FlagSpec>& flags);

}  // namespace convgraph
