#include "convgraph/base/config.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
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
  const bool has_max = spec.max_value != std::numeric_limits<std::int64_t>::max();
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
// The declarations' own check.

namespace {

std::string site(const FlagSpec& spec) {
  return spec.declared_in.empty() ? std::string("an unrecorded place") : spec.declared_in;
}

// "flag 'x' (declared at F:L)" or "alias of flag 'x' (declared at F:L)".
std::string role(std::string_view key, const FlagSpec& spec) {
  return fmt::format("{}flag '{}' (declared at {})", key == spec.name ? "" : "alias of ", spec.name,
                     site(spec));
}

}  // namespace

void check_flag_declarations(const std::vector<FlagSpec>& flags) {
  std::unordered_map<std::string_view, const FlagSpec*> owners;  // name or alias -> its flag
  for (const FlagSpec& spec : flags) {
    if (spec.name.empty()) {
      throw ValueError(fmt::format("a flag declared at {} has an empty name", site(spec)));
    }
    if (spec.doc.empty()) {
      throw ValueError(
          fmt::format("flag '{}' (declared at {}) has no doc; every flag needs a "
                      "one-line description",
                      spec.name, site(spec)));
    }
    std::vector<std::string_view> keys = {spec.name};
    keys.insert(keys.end(), spec.aliases.begin(), spec.aliases.end());
    for (const std::string_view key : keys) {
      if (key.empty()) {
        throw ValueError(
            fmt::format("flag '{}' (declared at {}) has an empty alias", spec.name, site(spec)));
      }
      const auto [existing, inserted] = owners.emplace(key, &spec);
      if (!inserted) {
        throw ValueError(fmt::format(
            "flag key '{}' is declared twice: as {} and as {}; a key names one flag, declared "
            "once, by the module that reads it (convgraph/flags.cpp lists the modules)",
            key, role(key, *existing->second), role(key, spec)));
      }
    }
    std::string canonical;
    try {
      canonical = canonical_value(spec, spec.default_value);
    } catch (const FlagError& error) {
      throw ValueError(fmt::format("flag '{}' (declared at {}): its own default is refused: {}",
                                   spec.name, site(spec), error.what()));
    }
    if (canonical != spec.default_value) {
      throw ValueError(fmt::format(
          "flag '{}' (declared at {}): default '{}' is not in canonical form; declare it as '{}'",
          spec.name, site(spec), spec.default_value, canonical));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Config

const std::vector<FlagSpec>& Config::specs() {
  // A static whose initialiser throws is initialised again on the next call: inconsistent
  // declarations make every use throw, rather than leaving a half-checked list behind.
  static const std::vector<FlagSpec> flags = [] {
    std::vector<FlagSpec> declared = declare_all_flags();
    check_flag_declarations(declared);
    return declared;
  }();
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
