// Choosing OpenBLAS's kernel family. OpenBLAS picks its kernels when it is loaded, from the CPU it
// recognises or from OPENBLAS_CORETYPE; 0.3.21 does not recognise recent AVX-512 CPUs and falls
// back to its AVX2 (Haswell) kernels at about half the speed. convgraph re-selects the kernel
// table once, before its first BLAS call, according to the flag blas.coretype.
#pragma once

#include <string>

namespace convgraph {

// Applies CORETYPE: "auto" selects SkylakeX kernels on CPUs with AVX-512 F/BW/DQ/VL (otherwise
// keeps OpenBLAS's choice), "env" keeps OpenBLAS's own choice, any other value selects that core.
// Returns the core name in use afterwards. Throws ValueError when an explicit core cannot be
// selected (a BLAS without runtime kernel selection, or a name OpenBLAS does not know). Cheap
// after the first call with the same value; not to be called while BLAS runs in another thread.
std::string configure_blas_coretype(const std::string& coretype);

// The name of the kernel family OpenBLAS uses now ("Haswell", "SkylakeX", ...; "unknown" for a
// BLAS that does not say).
std::string blas_corename();

}  // namespace convgraph
