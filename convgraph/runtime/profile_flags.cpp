#include "convgraph/runtime/profile_flags.hpp"

#include "convgraph/base/flag_builders.hpp"

namespace convgraph {

void declare_profile_flags(std::vector<FlagSpec>& flags) {
  flags.push_back(
      boolean_flag("profile", "False", "Collect per-op timings when compiled functions run"));
  flags.push_back(string_flag("profile.trace_file", "",
                              "Chrome trace JSON written after each profiled call; empty = none",
                              nullptr, "a file path, or empty"));
}

}  // namespace convgraph
