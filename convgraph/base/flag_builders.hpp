// Building flag declarations: the helpers a module's declare_<module>_flags() uses to append its
// FlagSpecs. Each records where it was called (FlagSpec::declared_in), so that a flag declared by
// two modules is reported with both places. See docs/flags.md, "Where flags are declared".
//
// Only the files that declare flags include this header (it needs <source_location>); code that
// reads flags includes config.hpp.
#pragma once

#include <cstdint>
#include <limits>
#include <source_location>
#include <string>
#include <string_view>
#include <vector>

#include "convgraph/base/config.hpp"

namespace convgraph {

// The max_value of an integer flag without an upper bound.
inline constexpr std::int64_t kNoFlagMaximum = std::numeric_limits<std::int64_t>::max();

// True/False (the default is "True" or "False").
FlagSpec boolean_flag(std::string name, std::string default_value, std::string doc,
                      std::source_location where = std::source_location::current());

// An integer in [MIN_VALUE, MAX_VALUE].
FlagSpec integer_flag(std::string name, std::int64_t default_value, std::int64_t min_value,
                      std::int64_t max_value, std::string doc,
                      std::source_location where = std::source_location::current());

// One of CHOICES, listed in display order (the default need not be first). Case-insensitive
// matching and extra spellings are set on the returned spec (choices_ignore_case,
// choice_aliases).
FlagSpec choice_flag(std::string name, std::string default_value, std::vector<std::string> choices,
                     std::string doc, std::source_location where = std::source_location::current());

// A ':'-separated list of names, empty by default.
FlagSpec list_flag(std::string name, std::string doc,
                   std::source_location where = std::source_location::current());

// Any string, or one that CHECK accepts (ACCEPTED describes what, for errors and describe()).
FlagSpec string_flag(std::string name, std::string default_value, std::string doc,
                     bool (*check)(std::string_view) = nullptr, std::string accepted = {},
                     std::source_location where = std::source_location::current());

// A flag kept only so that old settings are reported: any non-empty value is a FlagError naming
// REPLACED_BY.
FlagSpec deprecated_flag(std::string name, std::string replaced_by,
                         std::source_location where = std::source_location::current());

}  // namespace convgraph
