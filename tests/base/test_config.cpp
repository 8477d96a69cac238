#include "convgraph/base/config.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "convgraph/base/flag_builders.hpp"
#include "support/catch.hpp"
#include "support/messages.hpp"

using convgraph::Config;
using convgraph::FlagError;
using convgraph::FlagKind;
using convgraph::FlagSpec;
using convgraph::ValueError;
using convgraph::testing::contains;

namespace {

// The message of the FlagError that `action` throws; fails the test if it throws nothing.
template <typename Action>
std::string flag_error(Action&& action) {
  try {
    action();
  } catch (const FlagError& error) {
    return error.what();
  }
  FAIL("expected a FlagError");
  return {};
}

std::string apply_error(const std::string& flags) {
  return flag_error([&] {
    Config config;
    config.apply(flags);
  });
}

// Sets (or unsets) CONVGRAPH_FLAGS for a scope and restores the previous value and a fresh global
// configuration on exit.
class EnvironmentGuard {
 public:
  explicit EnvironmentGuard(const char* value) {
    if (const char* old = std::getenv("CONVGRAPH_FLAGS")) previous_ = old;
    if (value != nullptr) {
      ::setenv("CONVGRAPH_FLAGS", value, 1);
    } else {
      ::unsetenv("CONVGRAPH_FLAGS");
    }
    convgraph::reset_global_config();
  }
  ~EnvironmentGuard() {
    if (previous_) {
      ::setenv("CONVGRAPH_FLAGS", previous_->c_str(), 1);
    } else {
      ::unsetenv("CONVGRAPH_FLAGS");
    }
    convgraph::reset_global_config();
  }
  EnvironmentGuard(const EnvironmentGuard&) = delete;
  EnvironmentGuard& operator=(const EnvironmentGuard&) = delete;

 private:
  std::optional<std::string> previous_;
};

}  // namespace

TEST_CASE("config: defaults", "[config]") {
  const Config config = Config::defaults();
  CHECK(config.get("mode") == "FAST_RUN");
  CHECK(config.get("device") == "cpu");
  CHECK(config.get("floatX") == "float32");
  CHECK(config.get("dnn.enabled") == "auto");
  CHECK(config.get("dnn.conv.algo_fwd") == "small");
  CHECK(config.get("dnn.conv.algo_bwd_data") == "none");
  CHECK(config.get("dnn.conv.algo_bwd_filter") == "none");
  CHECK(config.get("dnn.conv.precision") == "as_input_f32");
  CHECK(config.get("autotune.cache") == "read_write");
  CHECK(config.get("autotune.cache_path").empty());
  CHECK(config.get("blas.coretype") == "auto");
  CHECK(config.get("debugmode.rtol").empty());
  CHECK(config.get_bool("allow_gc"));
  CHECK_FALSE(config.get_bool("conv.assert_shape"));
  CHECK_FALSE(config.get_bool("dnn.conv.allow_tf32"));
  CHECK_FALSE(config.get_bool("profile"));
  CHECK_FALSE(config.get_bool("optimizer.list_passes"));
  CHECK(config.get_int("threads") == 0);
  CHECK(config.get_int("metaopt.verbose") == 1);
  CHECK(config.get_int("dnn.conv.workspace_limit_mb") == 0);
  CHECK(config.get_list("optimizer_including").empty());
  CHECK(config.get_list("metaopt.optimizer_excluding").empty());
  for (const auto& spec : Config::specs()) {
    INFO(spec.name);
    CHECK(config.is_default(spec.name));
    CHECK(config.get(spec.name) == spec.default_value);
  }
  CHECK(Config() == config);
}

TEST_CASE("config: every declared default is accepted and canonical", "[config]") {
  std::vector<std::string> names;
  for (const auto& spec : Config::specs()) {
    INFO(spec.name);
    CHECK_FALSE(spec.doc.empty());
    names.push_back(spec.name);
    Config config;
    config.set(spec.name, spec.default_value);
    CHECK(config.get(spec.name) == spec.default_value);
    if (spec.kind == FlagKind::choice) {
      CHECK(std::find(spec.choices.begin(), spec.choices.end(), spec.default_value) !=
            spec.choices.end());
    }
  }
  std::sort(names.begin(), names.end());
  CHECK(std::adjacent_find(names.begin(), names.end()) == names.end());
}

TEST_CASE("config: apply parses several flags", "[config]") {
  Config config;
  config.apply(
      " mode=FAST_COMPILE, floatX = float64 ,threads=4,,conv.assert_shape=yes,"
      "dnn.conv.algo_fwd=time_once,metaopt.verbose=2 , dnn.conv.workspace_limit_mb=+0512,");
  CHECK(config.get("mode") == "FAST_COMPILE");
  CHECK(config.get("floatX") == "float64");
  CHECK(config.get_int("threads") == 4);
  CHECK(config.get_bool("conv.assert_shape"));
  CHECK(config.get("conv.assert_shape") == "True");
  CHECK(config.get("dnn.conv.algo_fwd") == "time_once");
  CHECK(config.get_int("metaopt.verbose") == 2);
  CHECK(config.get("dnn.conv.workspace_limit_mb") == "512");
  CHECK_FALSE(config.is_default("mode"));
  CHECK_FALSE(config.is_default("threads"));
  CHECK(config.is_default("device"));
  CHECK_FALSE(config == Config::defaults());

  // Later items win; the first '=' separates key and value.
  config.apply("threads=1,threads=2,profile.trace_file=out=1.json");
  CHECK(config.get_int("threads") == 2);
  CHECK(config.get("profile.trace_file") == "out=1.json");

  // Setting a flag back to its default makes it default again.
  config.set("mode", "FAST_RUN");
  CHECK(config.is_default("mode"));

  // Empty strings and strings of separators change nothing.
  Config unchanged;
  unchanged.apply("");
  unchanged.apply(" , ,, ");
  CHECK(unchanged == Config::defaults());
}

TEST_CASE("config: booleans accept the usual spellings and store True/False", "[config]") {
  Config config;
  for (const char* yes : {"True", "true", "1", "yes", "on", "TRUE", "Yes"}) {
    INFO(yes);
    config.set("profile", yes);
    CHECK(config.get("profile") == "True");
    CHECK(config.get_bool("profile"));
  }
  for (const char* no : {"False", "false", "0", "no", "off", "OFF"}) {
    INFO(no);
    config.set("profile", no);
    CHECK(config.get("profile") == "False");
    CHECK_FALSE(config.get_bool("profile"));
  }
}

TEST_CASE("config: mode ignores case and canonicalizes; other choices are case-sensitive",
          "[config]") {
  Config config;
  config.set("mode", "fast_compile");
  CHECK(config.get("mode") == "FAST_COMPILE");
  config.set("mode", "Fast_Run");
  CHECK(config.get("mode") == "FAST_RUN");
  config.set("mode", "debugmode");
  CHECK(config.get("mode") == "DebugMode");
  config.set("mode", "DEBUG_MODE");
  CHECK(config.get("mode") == "DebugMode");
  config.set("mode", "debug_mode");
  CHECK(config.get("mode") == "DebugMode");

  const std::string message = flag_error([&] { config.set("floatX", "FLOAT32"); });
  INFO(message);
  CHECK(contains(message, "'FLOAT32'"));
  CHECK(contains(message, "float16, float32, float64"));
  REQUIRE_THROWS_AS(config.set("dnn.conv.algo_fwd", "SMALL"), FlagError);
  REQUIRE_THROWS_AS(config.set("mode", "FAST"), FlagError);
  CHECK(config.get("floatX") == "float32");
}

TEST_CASE("config: lists are ':'-separated and empty entries are dropped", "[config]") {
  Config config;
  config.apply("optimizer_including=conv_meta: fusion ::local:,optimizer_excluding=conv_dnn");
  CHECK(config.get_list("optimizer_including") ==
        std::vector<std::string>{"conv_meta", "fusion", "local"});
  CHECK(config.get("optimizer_including") == "conv_meta:fusion:local");
  CHECK(config.get_list("optimizer_excluding") == std::vector<std::string>{"conv_dnn"});
  config.set("metaopt.optimizer_excluding", "conv_dnn:default");
  CHECK(config.get_list("metaopt.optimizer_excluding") ==
        std::vector<std::string>{"conv_dnn", "default"});
  config.set("optimizer_including", "::");
  CHECK(config.get_list("optimizer_including").empty());
  CHECK(config.is_default("optimizer_including"));
}

TEST_CASE("config: dnn.enable is an alias of dnn.enabled", "[config]") {
  Config config;
  config.set("dnn.enable", "False");
  CHECK(config.get("dnn.enabled") == "False");
  CHECK(config.get("dnn.enable") == "False");
  config.apply("dnn.enable=no_check");
  CHECK(config.get("dnn.enabled") == "no_check");
  CHECK_FALSE(config.is_default("dnn.enable"));
  config.apply("dnn.enabled=auto");
  CHECK(config.is_default("dnn.enable"));
  // dnn.enabled is a choice of strings, not a boolean.
  REQUIRE_THROWS_AS(config.set("dnn.enabled", "yes"), FlagError);
}

TEST_CASE("config: an unknown key suggests the nearest known key", "[config]") {
  std::string message = apply_error("optimizer_includng=fusion");
  INFO(message);
  CHECK(contains(message, "'optimizer_includng'"));
  CHECK(contains(message, "did you mean 'optimizer_including'?"));

  message = flag_error([] { Config().set("floatx", "float64"); });
  CHECK(contains(message, "did you mean 'floatX'?"));

  message = flag_error([] { Config().set("dnn.conv.algo_fwdd", "small"); });
  CHECK(contains(message, "did you mean 'dnn.conv.algo_fwd'?"));

  message = flag_error([] { (void)Config().get("metaopt.verbos"); });
  CHECK(contains(message, "did you mean 'metaopt.verbose'?"));

  message = flag_error([] { Config().set("completely_unrelated", "1"); });
  INFO(message);
  CHECK(contains(message, "'completely_unrelated'"));
  CHECK_FALSE(contains(message, "did you mean"));
  CHECK(contains(message, "convgraph flags"));
  CHECK(contains(message, "Config::describe()"));

  REQUIRE_THROWS_AS(Config().is_default("nope"), FlagError);
  REQUIRE_THROWS_AS(Config().get_bool("nope"), FlagError);
}

TEST_CASE("config: a bad choice lists the accepted values", "[config]") {
  const std::string message = apply_error("dnn.conv.algo_fwd=medium");
  INFO(message);
  CHECK(contains(message, "'dnn.conv.algo_fwd'"));
  CHECK(contains(message, "'medium'"));
  CHECK(contains(message,
                 "small, none, large, fft, fft_tiling, winograd, winograd_non_fused, "
                 "guess_once, guess_on_shape_change, time_once, time_on_shape_change"));

  const std::string typo = apply_error("dnn.conv.algo_bwd_filter=fft_tilng");
  INFO(typo);
  CHECK(contains(typo, "did you mean 'fft_tiling'?"));

  const std::string mode = apply_error("mode=FAST");
  CHECK(contains(mode, "FAST_RUN, FAST_COMPILE, DebugMode"));

  // Values that exist for one algorithm flag are refused by another.
  REQUIRE_THROWS_AS(Config().set("dnn.conv.algo_bwd_data", "small"), FlagError);
  REQUIRE_THROWS_AS(Config().set("dnn.conv.algo_bwd_filter", "winograd"), FlagError);
  REQUIRE_THROWS_AS(Config().set("autotune.cache", ""), FlagError);
  REQUIRE_THROWS_AS(Config().set("dnn.conv.precision", "bfloat16"), FlagError);
}

TEST_CASE("config: bad and out-of-range integers", "[config]") {
  std::string message = apply_error("threads=four");
  INFO(message);
  CHECK(contains(message, "'threads'"));
  CHECK(contains(message, "'four'"));
  CHECK(contains(message, "an integer >= 0"));

  message = apply_error("metaopt.verbose=3");
  INFO(message);
  CHECK(contains(message, "'metaopt.verbose'"));
  CHECK(contains(message, "'3'"));
  CHECK(contains(message, "an integer in [0, 2]"));

  for (const char* bad : {"-1", "1.5", "", "2x", "0x10", "99999999999999999999", "1 2"}) {
    INFO(bad);
    REQUIRE_THROWS_AS(Config().set("threads", bad), FlagError);
  }
  REQUIRE_THROWS_AS(Config().set("metaopt.verbose", "-1"), FlagError);
  REQUIRE_THROWS_AS(Config().set("dnn.conv.workspace_limit_mb", "-5"), FlagError);

  Config config;
  config.set("threads", " 0016 ");
  CHECK(config.get("threads") == "16");
  CHECK(config.get_int("threads") == 16);
  config.set("dnn.conv.workspace_limit_mb", "9223372036854775807");
  CHECK(config.get_int("dnn.conv.workspace_limit_mb") == INT64_MAX);
}

TEST_CASE("config: bad booleans", "[config]") {
  const std::string message = apply_error("allow_gc=maybe");
  INFO(message);
  CHECK(contains(message, "'allow_gc'"));
  CHECK(contains(message, "'maybe'"));
  CHECK(contains(message, "True or False"));
  REQUIRE_THROWS_AS(Config().set("conv.assert_shape", ""), FlagError);
  REQUIRE_THROWS_AS(Config().set("conv.assert_shape", "2"), FlagError);
}

TEST_CASE("config: bad syntax names the item and the expected form", "[config]") {
  std::string message = apply_error("mode");
  INFO(message);
  CHECK(contains(message, "'mode'"));
  CHECK(contains(message, "key=value"));

  message = apply_error("threads=2,=3");
  INFO(message);
  CHECK(contains(message, "'=3'"));
  CHECK(contains(message, "key=value"));

  // A list written with ',' instead of ':' leaves an item without '='.
  message = apply_error("optimizer_excluding=conv_dnn,conv_gemm");
  INFO(message);
  CHECK(contains(message, "'conv_gemm'"));
  CHECK(contains(message, "':'-separated"));

  REQUIRE_THROWS_AS(Config().set("", "1"), FlagError);
  REQUIRE_THROWS_AS(Config().set("  ", "1"), FlagError);
}

TEST_CASE("config: apply is all or nothing", "[config]") {
  Config config;
  config.apply("threads=2");
  const Config before = config;
  REQUIRE_THROWS_AS(config.apply("threads=3,mode=bogus"), FlagError);
  CHECK(config == before);
  CHECK(config.get_int("threads") == 2);
}

TEST_CASE("config: deprecated flags name their replacements", "[config]") {
  std::string message = apply_error("dnn.conv.workmem=small");
  INFO(message);
  CHECK(contains(message, "'dnn.conv.workmem'"));
  CHECK(contains(message, "deprecated"));
  CHECK(contains(message, "dnn.conv.algo_fwd"));

  for (const char* key : {"dnn.conv.workmem_bwd", "dnn.conv.algo_bwd"}) {
    message = flag_error([&] { Config().set(key, "deterministic"); });
    INFO(message);
    CHECK(contains(message, std::string("'") + key + "'"));
    CHECK(contains(message, "dnn.conv.algo_bwd_filter"));
    CHECK(contains(message, "dnn.conv.algo_bwd_data"));
  }

  // An empty value is accepted and changes nothing.
  Config config;
  config.apply("dnn.conv.workmem=,dnn.conv.workmem_bwd=,dnn.conv.algo_bwd=");
  CHECK(config == Config::defaults());

  // The deprecated flags are never suggested for a typo.
  message = apply_error("dnn.conv.algo_bw=none");
  CHECK_FALSE(contains(message, "'dnn.conv.algo_bwd'?"));
}

TEST_CASE("config: device names", "[config]") {
  Config config;
  for (const char* good : {"cpu", "cuda", "cuda0", "cuda12"}) {
    config.set("device", good);
    CHECK(config.get("device") == good);
  }
  for (const char* bad : {"gpu", "cuda-1", "CUDA", "", "cudax", "cpu0", "cuda 1"}) {
    INFO(bad);
    const std::string message = flag_error([&] { config.set("device", bad); });
    CHECK(contains(message, "'device'"));
    CHECK(contains(message, "cpu, cuda, cudaN"));
  }
}

TEST_CASE("config: DebugMode tolerances and the BLAS core type", "[config]") {
  Config config;
  for (const char* good : {"1e-5", "0", "0.25", ""}) {
    config.set("debugmode.rtol", good);
    config.set("debugmode.atol", good);
    CHECK(config.get("debugmode.atol") == good);
  }
  for (const char* bad : {"-1", "abc", "nan", "inf", "1e-5x"}) {
    INFO(bad);
    const std::string message = flag_error([&] { config.set("debugmode.rtol", bad); });
    CHECK(contains(message, "non-negative number"));
  }
  config.set("blas.coretype", "SkylakeX");
  CHECK(config.get("blas.coretype") == "SkylakeX");
  REQUIRE_THROWS_AS(config.set("blas.coretype", ""), FlagError);
  REQUIRE_THROWS_AS(config.set("blas.coretype", "Haswell;rm"), FlagError);
}

TEST_CASE("config: typed accessors refuse flags of another kind", "[config]") {
  const Config config;
  const std::string message = flag_error([&] { (void)config.get_bool("threads"); });
  INFO(message);
  CHECK(contains(message, "'threads'"));
  CHECK(contains(message, "get_int"));
  REQUIRE_THROWS_AS(config.get_int("mode"), FlagError);
  REQUIRE_THROWS_AS(config.get_list("allow_gc"), FlagError);
  REQUIRE_THROWS_AS(config.get_bool("dnn.enabled"), FlagError);
  // get() reads every kind.
  CHECK(config.get("threads") == "0");
  CHECK(config.get("allow_gc") == "True");
}

TEST_CASE("config: from_environment reads CONVGRAPH_FLAGS", "[config]") {
  {
    EnvironmentGuard guard("mode=DebugMode, threads=3,dnn.enable=False");
    const Config config = Config::from_environment();
    CHECK(config.get("mode") == "DebugMode");
    CHECK(config.get_int("threads") == 3);
    CHECK(config.get("dnn.enabled") == "False");
    CHECK(convgraph::global_config() == config);
  }
  {
    EnvironmentGuard guard(nullptr);
    CHECK(Config::from_environment() == Config::defaults());
  }
  {
    EnvironmentGuard guard("mode=DebugMode,threads=lots");
    const std::string message = flag_error([] { (void)Config::from_environment(); });
    INFO(message);
    CHECK(message.rfind("CONVGRAPH_FLAGS", 0) == 0);
    CHECK(contains(message, "'threads'"));
    CHECK(contains(message, "'lots'"));
  }
}

TEST_CASE("config: a malformed CONVGRAPH_FLAGS makes global_config throw, every time", "[config]") {
  {
    EnvironmentGuard guard("optimizer_includng=fusion");
    for (int attempt = 0; attempt < 2; ++attempt) {
      const std::string message = flag_error([] { (void)convgraph::global_config(); });
      INFO(message);
      CHECK(contains(message, "did you mean 'optimizer_including'?"));
    }
    REQUIRE_THROWS_AS(convgraph::ScopedFlags("threads=1"), FlagError);
    // A program can still install its own configuration.
    convgraph::set_global_config(Config::defaults());
    CHECK(convgraph::global_config() == Config::defaults());
  }
  // With the environment restored, the configuration is read again and works.
  CHECK(convgraph::global_config() == Config::from_environment());
}

TEST_CASE("config: ScopedFlags applies for a scope and restores", "[config]") {
  EnvironmentGuard guard(nullptr);
  const Config& original = convgraph::global_config();
  REQUIRE(original == Config::defaults());
  {
    convgraph::ScopedFlags outer("mode=FAST_COMPILE,threads=2");
    CHECK(convgraph::global_config().get("mode") == "FAST_COMPILE");
    CHECK(convgraph::global_config().get_int("threads") == 2);
    {
      convgraph::ScopedFlags inner("threads=7");
      CHECK(convgraph::global_config().get("mode") == "FAST_COMPILE");
      CHECK(convgraph::global_config().get_int("threads") == 7);
    }
    CHECK(convgraph::global_config().get_int("threads") == 2);
    REQUIRE_THROWS_AS(convgraph::ScopedFlags("threads=-2"), FlagError);
    CHECK(convgraph::global_config().get_int("threads") == 2);
  }
  CHECK(convgraph::global_config() == Config::defaults());
  // The reference taken before the scopes is still valid and unchanged.
  CHECK(original == Config::defaults());
}

TEST_CASE("config: global_config references survive replacement, across threads", "[config]") {
  EnvironmentGuard guard(nullptr);
  const Config& before = convgraph::global_config();
  Config changed;
  changed.set("threads", "5");
  convgraph::set_global_config(changed);
  CHECK(before == Config::defaults());
  CHECK(convgraph::global_config().get_int("threads") == 5);

  std::atomic<bool> bad_read{false};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        const std::int64_t threads = convgraph::global_config().get_int("threads");
        if (threads != 5 && threads != 6) bad_read = true;
      }
    });
  }
  Config other = changed;
  other.set("threads", "6");
  for (int i = 0; i < 500; ++i) convgraph::set_global_config(i % 2 == 0 ? other : changed);
  for (auto& reader : readers) reader.join();
  CHECK_FALSE(bad_read);
}

TEST_CASE("config: describe lists every flag with value, default and accepted values", "[config]") {
  Config config;
  config.set("threads", "3");
  const std::string text = config.describe();
  for (const auto& spec : Config::specs()) {
    INFO(spec.name);
    CHECK(contains(text, spec.name));
    CHECK(contains(text, spec.doc));
  }
  CHECK(contains(text, "dnn.enable"));
  CHECK(contains(text, "threads"));
  CHECK(contains(text, "= 3   (default: 0)"));
  CHECK(contains(text, "FAST_RUN, FAST_COMPILE, DebugMode"));
  CHECK(contains(text, "an integer in [0, 2]"));
  CHECK_FALSE(contains(Config::defaults().describe(), "(default:"));
}

TEST_CASE("config: docs/flags.md lists every flag, in display order, with its default",
          "[config]") {
  const auto path = std::filesystem::path(CONVGRAPH_SOURCE_DIR) / "docs" / "flags.md";
  std::ifstream file(path);
  INFO(path.string());
  REQUIRE(file);
  std::vector<std::string> lines;
  for (std::string line; std::getline(file, line);) lines.push_back(line);
  auto previous_row = lines.begin();
  for (const auto& spec : Config::specs()) {
    INFO(spec.name);
    const std::string cell = "| `" + spec.name + "`";
    const auto row = std::find_if(lines.begin(), lines.end(), [&](const std::string& line) {
      return line.rfind(cell, 0) == 0;
    });
    REQUIRE(row != lines.end());
    INFO(*row);
    CHECK(row > previous_row);  // the table lists the flags in display order
    previous_row = row;
    if (spec.default_value.empty()) {
      CHECK(contains(*row, "(empty)"));
    } else {
      CHECK(contains(*row, "`" + spec.default_value + "`"));
    }
    for (const std::string& choice : spec.choices) CHECK(contains(*row, "`" + choice + "`"));
    for (const std::string& alias : spec.aliases) CHECK(contains(*row, "`" + alias + "`"));
    if (spec.kind == FlagKind::integer) CHECK(contains(*row, "integer"));
  }
  // No row for a flag that is not declared.
  for (const std::string& line : lines) {
    if (line.rfind("| `", 0) != 0) continue;
    const auto end = line.find('`', 3);
    REQUIRE(end != std::string::npos);
    const std::string name = line.substr(3, end - 3);
    INFO(line);
    CHECK(std::any_of(Config::specs().begin(), Config::specs().end(),
                      [&](const FlagSpec& spec) { return spec.name == name; }));
  }
}

// ---------------------------------------------------------------------------------------------
// The declarations: by the module that reads each flag, checked on first use.

namespace {

// The ValueError message check_flag_declarations gives for FLAGS; fails the test if none.
std::string declaration_error(const std::vector<FlagSpec>& flags) {
  try {
    convgraph::check_flag_declarations(flags);
  } catch (const ValueError& error) {
    return error.what();
  }
  FAIL("expected a ValueError");
  return {};
}

// Two stand-in modules, as a module's declare_<module>_flags() would write them.
void declare_first_module_flags(std::vector<FlagSpec>& flags) {
  flags.push_back(convgraph::boolean_flag("first.enabled", "False", "First module switch"));
  flags.push_back(convgraph::integer_flag("shared.size", 4, 1, 16, "Size, as the first sees it"));
}

void declare_second_module_flags(std::vector<FlagSpec>& flags) {
  flags.push_back(convgraph::list_flag("second.names", "Names for the second module"));
  flags.push_back(convgraph::integer_flag("shared.size", 8, 1, 16, "Size, as the second sees it"));
}

}  // namespace

TEST_CASE("config: the built-in declarations pass their check and are what specs() holds",
          "[config]") {
  const std::vector<FlagSpec> declared = convgraph::declare_all_flags();
  CHECK_NOTHROW(convgraph::check_flag_declarations(declared));
  const auto& specs = Config::specs();
  REQUIRE(declared.size() == specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i) {
    CHECK(declared[i].name == specs[i].name);
    CHECK(declared[i].default_value == specs[i].default_value);
  }
  // The display order starts as Theano's did and ends with DebugMode's tolerances.
  CHECK(specs.front().name == "mode");
  CHECK(specs[1].name == "device");
  CHECK(specs[2].name == "floatX");
  CHECK(specs.back().name == "debugmode.atol");
}

TEST_CASE("config: every flag is declared by the module that reads it, outside base/", "[config]") {
  for (const auto& spec : Config::specs()) {
    INFO(spec.name << " declared at " << spec.declared_in);
    CHECK(spec.declared_in.rfind("convgraph/", 0) == 0);
    CHECK(spec.declared_in.rfind("convgraph/base/", 0) != 0);
    CHECK(contains(spec.declared_in, "_flags.cpp:"));
  }
  // One flag of each module, and the file that declares it.
  const std::vector<std::pair<std::string, std::string>> owners = {
      {"mode", "convgraph/optimizer/compile_flags.cpp:"},
      {"floatX", "convgraph/ops/tensor/tensor_flags.cpp:"},
      {"optimizer_including", "convgraph/optimizer/pass_database_flags.cpp:"},
      {"conv.impl", "convgraph/optimizer/conv_registry_flags.cpp:"},
      {"conv.assert_shape", "convgraph/ops/conv/conv_flags.cpp:"},
      {"dnn.conv.algo_fwd", "convgraph/ops/conv/conv_flags.cpp:"},
      {"metaopt.verbose", "convgraph/optimizer/conv_meta_flags.cpp:"},
      {"autotune.cache", "convgraph/runtime/autotune_cache_flags.cpp:"},
      {"blas.coretype", "convgraph/runtime/cpu_flags.cpp:"},
      {"allow_gc", "convgraph/planner/plan_flags.cpp:"},
      {"profile.trace_file", "convgraph/runtime/profile_flags.cpp:"},
      {"debugmode.rtol", "convgraph/planner/debug_mode_flags.cpp:"},
  };
  for (const auto& [name, file] : owners) {
    const auto spec = std::find_if(Config::specs().begin(), Config::specs().end(),
                                   [&](const FlagSpec& s) { return s.name == name; });
    REQUIRE(spec != Config::specs().end());
    INFO(spec->declared_in);
    CHECK(spec->declared_in.rfind(file, 0) == 0);
  }
}

TEST_CASE("config: a flag declared by two modules is a ValueError naming both places", "[config]") {
  std::vector<FlagSpec> flags;
  declare_first_module_flags(flags);
  declare_second_module_flags(flags);
  const std::string first = flags[1].declared_in;
  const std::string second = flags[3].declared_in;
  REQUIRE(contains(first, "test_config.cpp:"));
  REQUIRE(first != second);
  const std::string message = declaration_error(flags);
  CHECK(contains(message, "'shared.size' is declared twice"));
  CHECK(contains(message, first));
  CHECK(contains(message, second));

  // Without the clash the same modules are fine.
  flags.erase(flags.begin() + 3);
  CHECK_NOTHROW(convgraph::check_flag_declarations(flags));
}

TEST_CASE("config: an alias that is another flag's name or alias is a ValueError", "[config]") {
  FlagSpec enabled = convgraph::choice_flag("x.enabled", "auto", {"auto", "True"}, "Switch");
  enabled.aliases = {"x.enable"};
  const FlagSpec clash = convgraph::boolean_flag("x.enable", "False", "Another switch");
  std::string message = declaration_error({enabled, clash});
  CHECK(contains(message, "'x.enable' is declared twice"));
  CHECK(contains(message, "alias of flag 'x.enabled'"));
  CHECK(contains(message, "flag 'x.enable' (declared at"));

  FlagSpec other = convgraph::list_flag("y.names", "Names");
  other.aliases = {"x.enable"};
  message = declaration_error({enabled, other});
  CHECK(contains(message, "alias of flag 'x.enabled'"));
  CHECK(contains(message, "alias of flag 'y.names'"));

  // The real aliases: dnn.enable names dnn.enabled only.
  std::vector<FlagSpec> all = convgraph::declare_all_flags();
  all.push_back(convgraph::boolean_flag("dnn.enable", "False", "A second declaration"));
  CHECK(contains(declaration_error(all), "alias of flag 'dnn.enabled'"));
}

TEST_CASE("config: a declaration without a doc or with a refused default is a ValueError",
          "[config]") {
  CHECK(contains(declaration_error({convgraph::boolean_flag("b", "False", "")}), "has no doc"));
  CHECK(contains(declaration_error({convgraph::list_flag("", "Unnamed")}), "empty name"));
  CHECK(contains(declaration_error({convgraph::integer_flag("n", 5, 0, 2, "Small")}),
                 "its own default is refused"));
  CHECK(contains(declaration_error({convgraph::choice_flag("c", "d", {"a", "b"}, "Choice")}),
                 "its own default is refused"));
  CHECK(contains(
      declaration_error({convgraph::string_flag(
          "s", "-1", "Tolerance", [](std::string_view v) { return v != "-1"; }, "not -1")}),
      "its own default is refused"));
  // Accepted, but not as the values are stored: the default must be written canonically.
  const std::string message = declaration_error({convgraph::boolean_flag("b", "yes", "Switch")});
  CHECK(contains(message, "not in canonical form; declare it as 'True'"));
}
