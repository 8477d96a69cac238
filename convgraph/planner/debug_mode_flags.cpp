#include "convgraph/planner/debug_mode_flags.hpp"

#include <charconv>
#include <cmath>
#include <string_view>
#include <system_error>

#include "convgraph/base/flag_builders.hpp"

namespace convgraph {
namespace {

// Empty (the per-dtype default) or a finite non-negative number.
bool is_tolerance(std::string_view value) {
  if (value.empty()) return true;
  double number = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), number);
  return error == std::errc() && end == value.data() + value.size() && std::isfinite(number) &&
         number >= 0;
}

}  // namespace

void declare_debug_mode_flags(std::vector<FlagSpec>& flags) {
  flags.push_back(string_flag("debugmode.rtol", "",
                              "Relative tolerance of DebugMode's checks; empty = per-dtype default",
                              is_tolerance, "empty (per-dtype default) or a non-negative number"));
  flags.push_back(string_flag("debugmode.atol", "",
                              "Absolute tolerance of DebugMode's checks; empty = per-dtype default",
                              is_tolerance, "empty (per-dtype default) or a non-negative number"));
}

}  // namespace convgraph
