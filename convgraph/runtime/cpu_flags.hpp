// The flags of CPU execution: the threads of convgraph's parallel loops and OpenBLAS's kernel
// family.
#pragma once

#include <vector>

#include "convgraph/base/config.hpp"

namespace convgraph {

// Appends threads (read by the CPU kernels' parallel loops and the autotune key) and
// blas.coretype (applied by configure_blas_coretype at compile time) to FLAGS, in display order.
void declare_cpu_flags(std::vector<FlagSpec>& flags);

}  // namespace convgraph
