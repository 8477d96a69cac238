#include "convgraph/codegen/object_cache.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "convgraph/base/config.hpp"
#include "convgraph/codegen/fused_kernel.hpp"

namespace convgraph::codegen {
namespace {

constexpr std::string_view kMagic = "convgraph-codegen-object 1\n";
constexpr std::string_view kEnd = "\nend\n";

std::uint64_t fnv1a(std::string_view text) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// Warns once per SUBJECT (a file or a folder) for the life of the process.
void warn_once(const std::string& subject, const std::string& message) {
  static std::mutex mutex;
  static std::set<std::string> warned;
  std::lock_guard<std::mutex> lock(mutex);
  if (!warned.insert(subject).second) return;
  std::fprintf(stderr, "convgraph: warning: %s\n", message.c_str());
}

// Reads a decimal line at POS of TEXT; advances POS past its newline.
std::optional<std::size_t> read_size_line(const std::string& text, std::size_t& pos) {
  const std::size_t nl = text.find('\n', pos);
  if (nl == std::string::npos || nl == pos || nl - pos > 19) return std::nullopt;
  std::size_t value = 0;
  for (std::size_t i = pos; i < nl; ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    value = value * 10 + static_cast<std::size_t>(text[i] - '0');
  }
  pos = nl + 1;
  return value;
}

// Why TEXT is not an entry for KEY holding an object, or empty when it is; sets OBJECT.
std::string entry_problem(const std::string& text, const std::string& key, std::string& object) {
  if (text.compare(0, kMagic.size(), kMagic) != 0) return "it does not start with the entry header";
  std::size_t pos = kMagic.size();
  const auto key_size = read_size_line(text, pos);
  if (!key_size || pos + *key_size + 1 > text.size()) return "its key is truncated";
  if (text.compare(pos, *key_size, key) != 0 || *key_size != key.size()) {
    return "it holds the code of another key";
  }
  pos += *key_size + 1;
  const auto object_size = read_size_line(text, pos);
  if (!object_size || pos + *object_size + kEnd.size() != text.size() ||
      text.compare(pos + *object_size, kEnd.size(), kEnd) != 0) {
    return "it is truncated or has trailing bytes";
  }
  if (*object_size < 4 || text.compare(pos, 4,
                                       "\x7f"
                                       "ELF") != 0) {
    return "its object is not an ELF file";
  }
  object = text.substr(pos, *object_size);
  return "";
}

}  // namespace

std::string default_codegen_cache_dir() {
  // The XDG base-directory specification says relative values are to be ignored.
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg != nullptr && xdg[0] == '/') {
    return (std::filesystem::path(xdg) / "convgraph" / "codegen").string();
  }
  const char* home = std::getenv("HOME");
  if (home != nullptr && home[0] != '\0') {
    return (std::filesystem::path(home) / ".cache" / "convgraph" / "codegen").string();
  }
  return "";
}

namespace {

thread_local const ObjectCacheOptions* t_options = nullptr;

ObjectCacheOptions options_of(const Config& config) {
  ObjectCacheOptions options;
  options.enabled = config.get("codegen.disk_cache") == "on";
  options.dir = config.get("codegen.cache_dir");
  if (options.dir.empty()) options.dir = default_codegen_cache_dir();
  return options;
}

}  // namespace

ObjectCacheOptions object_cache_options() {
  return t_options != nullptr ? *t_options : options_of(global_config());
}

ScopedObjectCacheOptions::ScopedObjectCacheOptions(const Config& config)
    : options_(options_of(config)), previous_(t_options) {
  t_options = &options_;
}

ScopedObjectCacheOptions::~ScopedObjectCacheOptions() {
  t_options = previous_;
}

std::string object_cache_path(const std::string& dir, const std::string& key) {
  return (std::filesystem::path(dir) / fmt::format("{:016x}.o", fnv1a(key))).string();
}

std::optional<std::string> read_cached_object(const std::string& dir, const std::string& key) {
  const std::string path = object_cache_path(dir, key);
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  std::string object;
  const std::string problem = entry_problem(text, key, object);
  if (!problem.empty()) {
    ++codegen_counters().rejected_entries;
    warn_once(path, fmt::format("generated-code cache entry {} is ignored ({}); the code is "
                                "generated again and the entry rewritten",
                                path, problem));
    return std::nullopt;
  }
  return object;
}

void write_cached_object(const std::string& dir, const std::string& key, std::string_view object) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    warn_once(dir, fmt::format("generated-code cache folder {} cannot be created ({}); generated "
                               "code is not stored",
                               dir, ec.message()));
    return;
  }
  const std::string path = object_cache_path(dir, key);
  static std::atomic<std::int64_t> sequence{0};
  const std::string temp = fmt::format("{}.tmp.{}.{}", path, ::getpid(), ++sequence);
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << kMagic << key.size() << '\n' << key << '\n' << object.size() << '\n' << object << kEnd;
    out.flush();
    if (!out) {
      std::filesystem::remove(temp, ec);
      warn_once(dir, fmt::format("generated-code cache folder {} cannot be written; generated "
                                 "code is not stored",
                                 dir));
      return;
    }
  }
  std::filesystem::rename(temp, path, ec);
  if (ec) {
    std::filesystem::remove(temp, ec);
    warn_once(dir, fmt::format("generated-code cache entry {} cannot be replaced ({})", path,
                               ec.message()));
    return;
  }
  ++codegen_counters().disk_writes;
}

}  // namespace convgraph::codegen
