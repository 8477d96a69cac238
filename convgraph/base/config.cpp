#include "convgraph/base/config.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <mutex>
#include <system_error>
#include <unordered_map>

namespace convgraph {

namespace {

// ---------------------------------------------------------------------------------------------
// Small text helpers.

std::string_view trim(std::string_view text) {
  const auto is_space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  };
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

std::vector<std::string> split(std::string_view text, char separator) {
  std::vector<std::string> parts;
  while (true) {
    const auto at = text.find(separator);
    parts.emplace_back(text.substr(0, at));
    if (at == std::string_view::npos) break;
    text.remove_prefix(at + 1);
  }
  return parts;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The candidate nearest to `word`, if it is close enough to be a plausible typo.
const std::string* nearest(std::string_view word,
                           const std::vector<const std::string*>& candidates) {
  const std::string* best = nullptr;
  std::size_t best_distance = 0;
  for (const std::string* candidate : candidates) {
    const std::size_t distance = edit_distance(word, *candidate);
    if (best == nullptr || distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  const std::size_t tolerance = std::max<std::size_t>(2, word.size() / 3);
  return (best != nullptr && best_distance <= tolerance) ? best : nullptr;
}

std::string shown(std::string_view value) {
  return value.empty() ? std::string("\"\"") : std::string(value);
}

// ---------------------------------------------------------------------------------------------
// Checks of constrained string flags.

bool is_device_name(std::string_view value) {
  if (value == "cpu" || value == "cuda") return true;
  if (value.size() <= 4 || value.substr(0, 4) != "cuda") return false;
  return std::all_of(value.begin() + 4, value.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool is_tolerance(std::string_view value) {
  if (value.empty()) return true;
  double number = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), number);
  return error == std::errc() && end == value.data() + value.size() && std::isfinite(number) &&
         number >= 0;
}

bool is_blas_coretype(std::string_view value) {
  return !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

// ---------------------------------------------------------------------------------------------
// The declaration of every flag.

FlagSpec boolean_flag(std::string name, std::string default_value, std::string doc) {
  FlagSpec spec;
  spec.name = std::move(name);
  spec.kind = FlagKind::boolean;
  spec.default_value = std::move(default_value);
  spec.doc = std::move(doc);
  return spec;
}

FlagSpec integer_flag(std::string name, std::int64_t default_value, std::int64_t min_value,
                      std::int64_t max_value, std::string doc) {
  FlagSpec spec;
  spec.name = std::move(name);
  spec.kind = FlagKind::integer;
  spec.default_value = std::to_string(default_value);
  spec.min_value = min_value;
  spec.max_value = max_value;
  spec.doc = std::move(doc);
  return spec;
}

FlagSpec choice_flag(std::string name, std::string default_value, std::vector<std::string> choices,
                     std::string doc) {
  FlagSpec spec;
  spec.name = std::move(name);
  spec.kind = FlagKind::choice;
  spec.default_value = std::move(default_value);
  spec.choices = std::move(choices);
  spec.doc = std::move(doc);
  return spec;
}

FlagSpec list_flag(std::string name, std::string doc) {
  FlagSpec spec;
  spec.name = std::move(name);
  spec.kind = FlagKind::list;
  spec.doc = std::move(doc);
  return spec;
}

FlagSpec string_flag(std::string name, std::string default_value, std::string doc,
                     bool (*check)(std::string_view) = nullptr, std::string accepted = {}) {
  FlagSpec spec;
  spec.name = std::move(name);
  spec.kind = FlagKind::string;
  spec.default_value = std::move(default_value);
  spec.doc = std::move(doc);
  spec.check = check;
  spec.accepted = std::move(accepted);
  return spec;
}

FlagSpec deprecated_flag(std::string name, std::string replaced_by) {
  FlagSpec spec;
  spec.name = std::move(name);
  spec.kind = FlagKind::string;
  spec.doc = fmt::format("Deprecated and without effect: use {} instead", replaced_by);
  spec.replaced_by = std::move(replaced_by);
  spec.accepted = "empty (deprecated)";
  return spec;
}

constexpr std::int64_t kNoMaximum = std::numeric_limits<std::int64_t>::max();

std::vector<FlagSpec> declare_flags() {
  const std::vector<std::string> runtime_algorithms = {"guess_once", "guess_on_shape_change",
                                                       "time_once", "time_on_shape_change"};
  const auto with_runtime = [&](std::vector<std::string> fixed) {
    fixed.insert(fixed.end(), runtime_algorithms.begin(), runtime_algorithms.end());
    return fixed;
  };

  std::vector<FlagSpec> flags;

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
  flags.push_back(choice_flag("floatX", "float32", {"float16", "float32", "float64"},
                              "Dtype of scalars and constants created without an explicit dtype"));

  flags.push_back(list_flag("optimizer_including",
                            "Extra passes or tags to enable when compiling (':'-separated)"));
  flags.push_back(list_flag(
      "optimizer_excluding",
      "Passes or tags to disable when compiling (':'-separated); exclusion wins over inclusion"));
  flags.push_back(list_flag(
      "optimizer_requiring",
      "Tags a pass must all carry to run when compiling (':'-separated); others are dropped"));
  flags.push_back(list_flag("optimizer.print_before",
                            "Passes whose input graph is printed before they run (':'-separated)"));
  flags.push_back(list_flag("optimizer.print_after",
                            "Passes whose output graph is printed after they run (':'-separated)"));
  flags.push_back(boolean_flag("optimizer.list_passes", "False",
                               "Print the passes the optimizer flags select when compiling"));

  flags.push_back(list_flag(
      "conv.impl",
      "Convolution implementations to use, by registry name in order of preference (e.g. "
      "corrmm, onednn:corrmm, cudnn:gpu_corrmm; ':'-separated): each convolution goes to the first "
      "listed one that takes it, and no other implementation is used; empty = the lowering passes "
      "choose (convgraph impls lists the names)"));
  flags.push_back(boolean_flag("conv.assert_shape", "False",
                               "Check at run time that convolution inputs have the shapes "
                               "declared when the graph was built (image and filter shapes)"));

  FlagSpec dnn_enabled = choice_flag(
      "dnn.enabled", "auto", {"auto", "True", "False", "no_check"},
      "Use the vendor DNN library for convolutions (cuDNN on the GPU; False also keeps oneDNN off "
      "on the CPU): auto = when usable, True = error if unusable, False = never, no_check = skip "
      "the availability probe");
  dnn_enabled.aliases = {"dnn.enable"};
  flags.push_back(std::move(dnn_enabled));

  flags.push_back(choice_flag(
      "dnn.conv.algo_fwd", "small",
      with_runtime(
          {"small", "none", "large", "fft", "fft_tiling", "winograd", "winograd_non_fused"}),
      "cuDNN forward algorithm: a fixed one, or guess_* (cuDNN heuristic) / time_* (benchmark) "
      "chosen once per op or on each new shape"));
  flags.push_back(choice_flag(
      "dnn.conv.algo_bwd_data", "none",
      with_runtime(
          {"none", "deterministic", "fft", "fft_tiling", "winograd", "winograd_non_fused"}),
      "cuDNN backward-data (input gradient) algorithm: a fixed one, or guess_* / time_* chosen "
      "once per op or on each new shape"));
  flags.push_back(choice_flag(
      "dnn.conv.algo_bwd_filter", "none",
      with_runtime({"none", "deterministic", "fft", "small", "winograd_non_fused", "fft_tiling"}),
      "cuDNN backward-filter (weight gradient) algorithm: a fixed one, or guess_* / time_* chosen "
      "once per op or on each new shape"));
  flags.push_back(choice_flag(
      "dnn.conv.precision", "as_input_f32",
      {"as_input_f32", "as_input", "float16", "float32", "float64"},
      "Compute dtype of cuDNN convolutions: as_input_f32 = the inputs' dtype but float32 for "
      "float16 inputs, as_input = the inputs' dtype, or a fixed dtype"));
  flags.push_back(
      boolean_flag("dnn.conv.allow_tf32", "False",
                   "Allow TF32 tensor-core math for float32 convolutions on GPUs that have it"));
  flags.push_back(integer_flag(
      "dnn.conv.workspace_limit_mb", 0, 0, kNoMaximum,
      "Largest cuDNN workspace in MiB (an algorithm needing more falls back to the next one); "
      "0 = no fixed limit: guess_* / time_* consider the free GPU memory (at most 4 "
      "GiB) and any algorithm whose workspace can be allocated runs"));
  flags.push_back(deprecated_flag("dnn.conv.workmem", "dnn.conv.algo_fwd"));
  flags.push_back(deprecated_flag("dnn.conv.workmem_bwd",
                                  "dnn.conv.algo_bwd_filter and dnn.conv.algo_bwd_data"));
  flags.push_back(
      deprecated_flag("dnn.conv.algo_bwd", "dnn.conv.algo_bwd_filter and dnn.conv.algo_bwd_data"));

  flags.push_back(list_flag("metaopt.optimizer_including",
                            "Meta-optimizer tags whose candidates are also timed, e.g. "
                            "alternative:conv3d2d (':'-separated)"));
  flags.push_back(list_flag("metaopt.optimizer_excluding",
                            "Meta-optimizer tags whose candidates are not timed, e.g. "
                            "conv_dnn:default (':'-separated)"));
  flags.push_back(integer_flag(
      "metaopt.verbose", 1, 0, 2,
      "Meta-optimizer output on stderr: 0 = silent, 1 (default) = one line per convolution "
      "(candidates, winner, time) and nodes it cannot time, 2 = also every candidate's time or "
      "reason"));

  flags.push_back(choice_flag("autotune.cache", "read_write", {"read_write", "read_only", "off"},
                              "On-disk autotune cache: read_write, read_only (never appended "
                              "to), off (time again in every process)"));
  flags.push_back(
      string_flag("autotune.cache_path", "",
                  "Autotune cache file; empty = $XDG_CACHE_HOME/convgraph/autotune.jsonl, else "
                  "~/.cache/convgraph/autotune.jsonl",
                  nullptr, "a file path, or empty"));

  flags.push_back(integer_flag("threads", 0, 0, kNoMaximum,
                               "CPU threads for convgraph's parallel loops; 0 = all cores"));
  flags.push_back(string_flag(
      "blas.coretype", "auto",
      "OpenBLAS kernel family: auto = the fastest the CPU supports (SkylakeX with "
      "AVX-512), env = OpenBLAS's own choice (OPENBLAS_CORETYPE), or a core name",
      is_blas_coretype, "auto, env, or an OpenBLAS core name (e.g. Haswell, SkylakeX)"));
  flags.push_back(
      boolean_flag("allow_gc", "True", "Release intermediate buffers after their last reader"));

  flags.push_back(
      boolean_flag("profile", "False", "Collect per-op timings when compiled functions run"));
  flags.push_back(string_flag("profile.trace_file", "",
                              "Chrome trace JSON written after each profiled call; empty = none",
                              nullptr, "a file path, or empty"));

  flags.push_back(string_flag("debugmode.rtol", "",
                              "Relative tolerance of DebugMode's checks; empty = per-dtype default",
                              is_tolerance, "empty (per-dtype default) or a non-negative number"));
  flags.push_back(string_flag("debugmode.atol", "",
                              "Absolute tolerance of DebugMode's checks; empty = per-dtype default",
                              is_tolerance, "empty (per-dtype default) or a non-negative number"));

  return flags;
}

// Name or alias -> index into specs().
const std::unordered_map<std::string_view, std::size_t>& key_index() {
  static const std::unordered_map<std::string_view, std::size_t> index = [] {
    std::unordered_map<std::string_view, std::size_t> map;
    const auto& specs = Config::specs();
    for (std::size_t i = 0; i < specs.size(); ++i) {
      map.emplace(specs[i].name, i);
      for (const std::string& alias : specs[i].aliases) map.emplace(alias, i);
    }
    return map;
  }();
  return index;
}

[[noreturn]] void throw_unknown_key(std::string_view key) {
  // Deprecated flags are not suggested: setting one only leads to another error.
  std::vector<const std::string*> candidates;
  for (const FlagSpec& spec : Config::specs()) {
    if (!spec.replaced_by.empty()) continue;
    candidates.push_back(&spec.name);
    for (const std::string& alias : spec.aliases) candidates.push_back(&alias);
  }
  if (const std::string* suggestion = nearest(key, candidates)) {
    throw FlagError(fmt::format("unknown flag '{}'; did you mean '{}'?", key, *suggestion));
  }
  throw FlagError(
      fmt::format("unknown flag '{}'; no known flag has a similar name (`convgraph flags` or "
                  "Config::describe() lists all flags)",
                  key));
}

std::size_t index_of(std::string_view key) {
  const auto& index = key_index();
  const auto found = index.find(key);
  if (found == index.end()) throw_unknown_key(key);
  return found->second;
}

// "a boolean", "an integer", ...: what a flag of this kind holds.
std::string_view kind_noun(FlagKind kind) {
  switch (kind) {
    case FlagKind::boolean:
      return "a boolean";
    case FlagKind::integer:
      return "an integer";
    case FlagKind::string:
      return "a string";
    case FlagKind::choice:
      return "a choice";
    case FlagKind::list:
      return "a list";
  }
  return "an unknown kind";
}

std::string integer_range(const FlagSpec& spec) {
  constexpr auto lowest = std::numeric_limits<std::int64_t>::min();
  const bool has_min = spec.min_value != lowest;
  const bool has_max = spec.max_value != kNoMaximum;
  if (has_min && has_max)
    return fmt::format("an integer in [{}, {}]", spec.min_value, spec.max_value);
  if (has_min) return fmt::format("an integer >= {}", spec.min_value);
  if (has_max) return fmt::format("an integer <= {}", spec.max_value);
  return "an integer";
}

// What a flag accepts, as shown in error messages and describe().
std::string accepted_values(const FlagSpec& spec) {
  switch (spec.kind) {
    case FlagKind::boolean:
      return "True, False";
    case FlagKind::integer:
      return integer_range(spec);
    case FlagKind::choice:
      return fmt::format("{}", fmt::join(spec.choices, ", "));
    case FlagKind::list:
      return "':'-separated names, or empty";
    case FlagKind::string:
      return spec.accepted.empty() ? "any string" : spec.accepted;
  }
  return {};
}

[[noreturn]] void throw_bad_value(const FlagSpec& spec, std::string_view value,
                                  std::string_view expected, std::string_view hint = {}) {
  throw FlagError(fmt::format("invalid value '{}' for flag '{}': expected {}{}", value, spec.name,
                              expected, hint));
}

std::string canonical_integer(const FlagSpec& spec, std::string_view value) {
  std::string_view digits = value;
  if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
  std::int64_t number = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), number);
  const bool parsed =
      !digits.empty() && error == std::errc() && end == digits.data() + digits.size();
  if (!parsed || number < spec.min_value || number > spec.max_value) {
    throw_bad_value(spec, value, integer_range(spec));
  }
  return std::to_string(number);
}

std::string canonical_boolean(const FlagSpec& spec, std::string_view value) {
  for (std::string_view yes : {"true", "1", "yes", "on"}) {
    if (equal_ignoring_case(value, yes)) return "True";
  }
  for (std::string_view no : {"false", "0", "no", "off"}) {
    if (equal_ignoring_case(value, no)) return "False";
  }
  throw_bad_value(spec, value, "True or False",
                  " (also accepted: true/false, 1/0, yes/no, on/off)");
}

std::string canonical_choice(const FlagSpec& spec, std::string_view value) {
  const auto matches = [&](std::string_view candidate) {
    return spec.choices_ignore_case ? equal_ignoring_case(value, candidate) : value == candidate;
  };
  for (const std::string& choice : spec.choices) {
    if (value == choice) return choice;
  }
  for (const std::string& choice : spec.choices) {
    if (matches(choice)) return choice;
  }
  for (const auto& [spelling, choice] : spec.choice_aliases) {
    if (matches(spelling)) return choice;
  }
  std::vector<const std::string*> candidates;
  for (const std::string& choice : spec.choices) candidates.push_back(&choice);
  std::string hint;
  if (spec.choices_ignore_case) hint = " (any letter case)";
  if (const std::string* suggestion = nearest(value, candidates)) {
    hint += fmt::format("; did you mean '{}'?", *suggestion);
  }
  throw_bad_value(spec, value, fmt::format("one of {}", accepted_values(spec)), hint);
}

std::string canonical_list(std::string_view value) {
  std::vector<std::string> entries;
  for (const std::string& entry : split(value, ':')) {
    const std::string_view trimmed = trim(entry);
    if (!trimmed.empty()) entries.emplace_back(trimmed);
  }
  return fmt::format("{}", fmt::join(entries, ":"));
}

std::string canonical_value(const FlagSpec& spec, std::string_view raw) {
  const std::string_view value = trim(raw);
  if (!spec.replaced_by.empty()) {
    if (value.empty()) return {};
    throw FlagError(fmt::format(
        "flag '{}' is deprecated and no longer has any effect (got '{}'): use {} instead",
        spec.name, value, spec.replaced_by));
  }
  switch (spec.kind) {
    case FlagKind::boolean:
      return canonical_boolean(spec, value);
    case FlagKind::integer:
      return canonical_integer(spec, value);
    case FlagKind::choice:
      return canonical_choice(spec, value);
    case FlagKind::list:
      return canonical_list(value);
    case FlagKind::string:
      if (spec.check != nullptr && !spec.check(value)) {
        throw_bad_value(spec, value, accepted_values(spec));
      }
      return std::string(value);
  }
  return std::string(value);
}

const FlagSpec& spec_of_kind(std::string_view key, FlagKind kind, std::size_t& index) {
  index = index_of(key);
  const FlagSpec& spec = Config::specs()[index];
  if (spec.kind != kind) {
    const std::string_view accessor = spec.kind == FlagKind::boolean   ? "get_bool"
                                      : spec.kind == FlagKind::integer ? "get_int"
                                      : spec.kind == FlagKind::list    ? "get_list"
                                                                       : "get";
    throw FlagError(fmt::format("flag '{}' holds {}, not {}: read it with {}()", spec.name,
                                kind_noun(spec.kind), kind_noun(kind), accessor));
  }
  return spec;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Config

const std::vector<FlagSpec>& Config::specs() {
  static const std::vector<FlagSpec> flags = declare_flags();
  return flags;
}

Config::Config() {
  const auto& all = specs();
  values_.reserve(all.size());
  for (const FlagSpec& spec : all) values_.push_back(spec.default_value);
}

Config Config::defaults() {
  return Config();
}

Config Config::from_environment() {
  Config config;
  const char* flags = std::getenv("CONVGRAPH_FLAGS");
  if (flags == nullptr) return config;
  try {
    config.apply(flags);
  } catch (const FlagError& error) {
    throw FlagError(fmt::format("CONVGRAPH_FLAGS=\"{}\": {}", flags, error.what()));
  }
  return config;
}

void Config::set(std::string_view key, std::string_view value) {
  const std::string_view name = trim(key);
  if (name.empty()) {
    throw FlagError(fmt::format("empty flag name (value '{}'); expected key=value", value));
  }
  const std::size_t index = index_of(name);
  values_[index] = canonical_value(specs()[index], value);
}

void Config::apply(std::string_view flags) {
  Config updated = *this;
  for (const std::string& raw_item : split(flags, ',')) {
    const std::string_view item = trim(raw_item);
    if (item.empty()) continue;
    const auto equals = item.find('=');
    if (equals == std::string_view::npos) {
      throw FlagError(fmt::format(
          "malformed flag item '{}': expected key=value (items are ','-separated; lists inside "
          "a value are ':'-separated)",
          item));
    }
    const std::string_view key = trim(item.substr(0, equals));
    if (key.empty()) {
      throw FlagError(fmt::format(
          "malformed flag item '{}': the key before '=' is empty; expected key=value", item));
    }
    updated.set(key, item.substr(equals + 1));
  }
  *this = std::move(updated);
}

std::string Config::get(std::string_view key) const {
  return values_[index_of(key)];
}

bool Config::get_bool(std::string_view key) const {
  std::size_t index = 0;
  spec_of_kind(key, FlagKind::boolean, index);
  return values_[index] == "True";
}

std::int64_t Config::get_int(std::string_view key) const {
  std::size_t index = 0;
  spec_of_kind(key, FlagKind::integer, index);
  std::int64_t number = 0;
  const std::string& text = values_[index];
  std::from_chars(text.data(), text.data() + text.size(), number);  // stored canonical
  return number;
}

std::vector<std::string> Config::get_list(std::string_view key) const {
  std::size_t index = 0;
  spec_of_kind(key, FlagKind::list, index);
  std::vector<std::string> entries;
  for (std::string& entry : split(values_[index], ':')) {
    if (!entry.empty()) entries.push_back(std::move(entry));
  }
  return entries;
}

bool Config::is_default(std::string_view key) const {
  const std::size_t index = index_of(key);
  return values_[index] == specs()[index].default_value;
}

std::string Config::describe() const {
  const auto& all = specs();
  std::size_t name_width = 0;
  for (const FlagSpec& spec : all) name_width = std::max(name_width, spec.name.size());

  std::string text =
      "convgraph flags: name = current value (default when changed), accepted values, description."
      "\nSet them with CONVGRAPH_FLAGS=\"key=value,key=value\" (lists inside a value are "
      "':'-separated).\n";
  for (std::size_t i = 0; i < all.size(); ++i) {
    const FlagSpec& spec = all[i];
    text += fmt::format("\n{:<{}} = {}", spec.name, name_width, shown(values_[i]));
    if (values_[i] != spec.default_value) {
      text += fmt::format("   (default: {})", shown(spec.default_value));
    }
    if (!spec.aliases.empty()) {
      text += fmt::format("   (alias: {})", fmt::join(spec.aliases, ", "));
    }
    text += fmt::format("\n    accepted: {}\n    {}\n", accepted_values(spec), spec.doc);
  }
  return text;
}

bool Config::operator==(const Config& other) const {
  return values_ == other.values_;
}

// ---------------------------------------------------------------------------------------------
// The process-wide configuration.

namespace {

struct GlobalConfigState {
  std::mutex mutex;
  const Config* current = nullptr;
  // Every distinct configuration ever installed. Never freed, so that references returned by
  // global_config() stay valid while another thread installs a new configuration.
  std::vector<std::unique_ptr<const Config>> installed;
};

GlobalConfigState& global_state() {
  // Never destroyed: code running during static destruction may still read the configuration.
  static auto* state = new GlobalConfigState;
  return *state;
}

// Requires the state's mutex to be held.
const Config* install(GlobalConfigState& state, Config config) {
  for (const auto& existing : state.installed) {
    if (*existing == config) return existing.get();
  }
  state.installed.push_back(std::make_unique<const Config>(std::move(config)));
  return state.installed.back().get();
}

}  // namespace

const Config& global_config() {
  GlobalConfigState& state = global_state();
  std::lock_guard<std::mutex> lock(state.mutex);
  if (state.current == nullptr) {
    // Throws (leaving current unset, so the next call tries again) when CONVGRAPH_FLAGS is bad.
    state.current = install(state, Config::from_environment());
  }
  return *state.current;
}

void set_global_config(Config config) {
  GlobalConfigState& state = global_state();
  std::lock_guard<std::mutex> lock(state.mutex);
  state.current = install(state, std::move(config));
}

void reset_global_config() {
  GlobalConfigState& state = global_state();
  std::lock_guard<std::mutex> lock(state.mutex);
  state.current = nullptr;
}

ScopedFlags::ScopedFlags(std::string_view flags) : previous_(global_config()) {
  Config updated = previous_;
  updated.apply(flags);
  set_global_config(std::move(updated));
}

ScopedFlags::~ScopedFlags() {
  set_global_config(std::move(previous_));
}

std::optional<std::string> nearest_word(std::string_view word,
                                        const std::vector<std::string>& candidates) {
  std::vector<const std::string*> pointers;
  for (const std::string& c : candidates) pointers.push_back(&c);
  if (const std::string* best = nearest(word, pointers)) return *best;
  return std::nullopt;
}

}  // namespace convgraph
