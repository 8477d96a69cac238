// Configuration flags: one Config object filled from the defaults, then the CONVGRAPH_FLAGS
// environment variable ("key=value,key=value"), then the program's own settings.
//
// The mechanism lives here (parsing, validation, canonical values, describe(), the process-wide
// configuration); the flags do not. Each flag is declared (kind, default, accepted values,
// one-line doc) by the module that reads it, in that module's declare_<module>_flags(), built with
// the helpers of convgraph/base/flag_builders.hpp. declare_all_flags(), declared below and defined
// in convgraph/flags.cpp, calls them in display order; Config::specs() calls it once and checks
// the result (check_flag_declarations). docs/flags.md lists the flags for users and a test keeps
// it in step with the declarations.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "convgraph/base/error.hpp"

namespace convgraph {

enum class FlagKind { boolean, integer, string, choice, list };

struct FlagSpec {
  std::string name;  // "optimizer_including", "dnn.conv.algo_fwd"
  FlagKind kind = FlagKind::string;
  std::string default_value;  // textual, in canonical form
  // Accepted values of a FlagKind::choice flag, in display order (the default need not be first).
  std::vector<std::string> choices;
  std::vector<std::string> aliases;  // other keys that name this flag, e.g. "dnn.enable"
  std::string doc;                   // one line
  std::int64_t min_value = std::numeric_limits<std::int64_t>::min();  // FlagKind::integer only
  std::int64_t max_value = std::numeric_limits<std::int64_t>::max();
  // Non-empty for deprecated flags: any non-empty value is an error that names this replacement.
  std::string replaced_by;

  // FlagKind::choice: match the choices ignoring ASCII case (the stored value is the choice as
  // spelled in `choices`), and extra spellings mapped to a choice, as {spelling, choice}.
  bool choices_ignore_case = false;
  std::vector<std::pair<std::string, std::string>> choice_aliases;
  // FlagKind::string whose form is constrained: the check and a description of what it accepts
  // (shown in error messages and describe()). A null check accepts any string.
  bool (*check)(std::string_view value) = nullptr;
  std::string accepted;

  // Where the declaration is, "convgraph/optimizer/compile_flags.cpp:24" (set by the builders of
  // flag_builders.hpp): named by the errors of check_flag_declarations. Not shown to users.
  std::string declared_in;
};

// Every flag of every module, in display order. Declared here, in the bottom layer, and defined
// in convgraph/flags.cpp, above every layer, which calls each module's declare_<module>_flags():
// base/ includes no header of a higher layer, and the link joins the two. Config::specs() is the
// one caller; everything else reads Config::specs().
std::vector<FlagSpec> declare_all_flags();

// Checks a set of declarations before use: every name and alias is non-empty and names one flag
// only (a name declared by two modules, or an alias equal to another flag's name, is caught here),
// every flag has a doc, and every default is accepted and in canonical form. Throws ValueError
// naming the flag and where each clashing declaration is.
void check_flag_declarations(const std::vector<FlagSpec>& flags);

// A complete set of flag values. Cheap to copy (a few dozen short strings); compare with ==.
class Config {
 public:
  // The defaults (same as Config::defaults()).
  Config();

  // Every declared flag, in display order: declare_all_flags(), checked by
  // check_flag_declarations() on first use. While the declarations are inconsistent (a duplicate
  // name...), every call throws that ValueError.
  static const std::vector<FlagSpec>& specs();
  static Config defaults();
  // The defaults, then the environment variable CONVGRAPH_FLAGS. A malformed variable throws
  // FlagError whose message starts with "CONVGRAPH_FLAGS".
  static Config from_environment();

  // Validates and stores one value. An alias key sets the flag it names. Values are trimmed and
  // stored in canonical form (booleans as True/False, mode as FAST_RUN/FAST_COMPILE/DebugMode,
  // integers without leading zeros, lists without empty entries). Throws FlagError for an unknown
  // key (suggesting the nearest one), a value outside the accepted set, or a deprecated flag.
  void set(std::string_view key, std::string_view value);
  // Applies "key=value,key=value": whitespace around items, keys and values is trimmed, empty items
  // are ignored, the first '=' separates key and value, later items win. Lists inside a value are
  // ':'-separated. All or nothing: on error, *this is left unchanged.
  void apply(std::string_view flags);

  // The textual (canonical) value. Accepts aliases.
  std::string get(std::string_view key) const;
  // Typed accessors: FlagError when the key is unknown or the flag is of another kind.
  bool get_bool(std::string_view key) const;
  std::int64_t get_int(std::string_view key) const;
  // The ':'-separated entries, empty entries dropped.
  std::vector<std::string> get_list(std::string_view key) const;
  bool is_default(std::string_view key) const;

  // A listing of every flag: name, current value, default, accepted values and one-line doc.
  std::string describe() const;

  bool operator==(const Config& other) const;

 private:
  std::vector<std::string> values_;  // parallel to specs()
};

// The entry of CANDIDATES nearest to WORD by edit distance when it is close enough to be a
// plausible typo (at most max(2, |WORD| / 3) edits); std::nullopt otherwise. For "did you mean"
// hints in errors about names (flags, passes, implementations).
std::optional<std::string> nearest_word(std::string_view word,
                                        const std::vector<std::string>& candidates);

// The process-wide configuration: the defaults plus CONVGRAPH_FLAGS, read on first use. While
// CONVGRAPH_FLAGS is malformed every call throws FlagError (the variable is read again on each
// call until it parses); the process never aborts over it.
// Thread-safe. The returned reference stays valid for the life of the process, even after
// set_global_config installs another configuration (every distinct configuration installed is
// kept, so memory is bounded by the number of distinct configurations, not of calls).
const Config& global_config();
// Replaces the process-wide configuration (used by programs and tests). Thread-safe.
void set_global_config(Config config);
// Forgets the process-wide configuration so that the next global_config() reads CONVGRAPH_FLAGS
// again (for tests and programs that change the environment). References stay valid.
void reset_global_config();

// Applies a flags string on top of the global configuration for a scope and restores the previous
// configuration on exit. It changes the process-wide configuration, so other threads see it too:
// meant for tests and for a program's top level, not for concurrent scopes.
class ScopedFlags {
 public:
  explicit ScopedFlags(std::string_view flags);
  ~ScopedFlags();
  ScopedFlags(const ScopedFlags&) = delete;
  ScopedFlags& operator=(const ScopedFlags&) = delete;

 private:
  Config previous_;
};

}  // namespace convgraph
