#include "convgraph/optimizer/compile_flags.hpp"

#include <algorithm>
#include <string_view>
#include <utility>

#include "convgraph/base/flag_builders.hpp"

namespace convgraph {
namespace {

bool is_device_name(std::string_view value) {
  if (value == "cpu" || value == "cuda") return true;
  if (value.size() <= 4 || value.substr(0, 4) != "cuda") return false;
  return std::all_of(value.begin() + 4, value.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

void declare_compile_flags(std::vector<FlagSpec>& flags) {
  FlagSpec mode = choice_flag(
      "mode", "FAST_RUN", {"FAST_RUN", "FAST_COMPILE", "DebugMode"},
      "Compilation mode: FAST_RUN optimizes fully, FAST_COMPILE runs only the passes needed to "
      "execute, DebugMode checks every op against its reference implementation");
  mode.choices_ignore_case = true;
  mode.choice_aliases = {{"DEBUG_MODE", "DebugMode"}};
  flags.push_back(std::move(mode));

  flags.push_back(string_flag("device", "cpu",
                              "Device compiled functions run on: cpu, cuda (the current CUDA "
                              "device) or cudaN (CUDA device number N)",
                              is_device_name, "cpu, cuda, cudaN (N = CUDA device number)"));
}

}  // namespace convgraph
