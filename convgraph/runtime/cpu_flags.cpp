#include "convgraph/runtime/cpu_flags.hpp"

#include <algorithm>
#include <string_view>

#include "convgraph/base/flag_builders.hpp"

namespace convgraph {
namespace {

// OpenBLAS core names are identifiers ("Haswell", "SkylakeX"); whether OpenBLAS knows the name
// is checked when it is applied (configure_blas_coretype).
bool is_blas_coretype(std::string_view value) {
  return !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

}  // namespace

void declare_cpu_flags(std::vector<FlagSpec>& flags) {
  flags.push_back(integer_flag("threads", 0, 0, kNoFlagMaximum,
                               "CPU threads for convgraph's parallel loops; 0 = all cores"));
  flags.push_back(string_flag(
      "blas.coretype", "auto",
      "OpenBLAS kernel family: auto = the fastest the CPU supports (SkylakeX with "
      "AVX-512), env = OpenBLAS's own choice (OPENBLAS_CORETYPE), or a core name",
      is_blas_coretype, "auto, env, or an OpenBLAS core name (e.g. Haswell, SkylakeX)"));
}

}  // namespace convgraph
