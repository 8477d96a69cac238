#include "convgraph/runtime/autotune_cache.hpp"

#include <cblas.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <omp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_map>

#include "convgraph/build_config.hpp"

#if CONVGRAPH_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

namespace convgraph {
namespace {

using Json = nlohmann::json;

// Keys are compared as text, so both sides must be dumped the same way. Invalid UTF-8 (a
// strange CPU name) is replaced rather than thrown on: the cache must never fail a compile.
std::string dump(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

struct Entry {
  AutotuneResult result;
  bool from_file = false;  // read from the file rather than stored by this process
};

// How far a cache file has been read, and which problems with it were already reported (each is
// reported once per process: a cache that cannot be written would otherwise warn on every
// compile).
struct FileState {
  std::int64_t offset = 0;      // bytes consumed: always just after a newline
  std::int64_t lines_read = 0;  // complete lines consumed, for line numbers in warnings
  bool read_warned = false;
  bool write_failed = false;
};

struct CacheState {
  std::mutex mutex;
  std::unordered_map<std::string, Entry> entries;  // canonical key -> result
  std::map<std::string, FileState> files;          // path -> what was read from it
  AutotuneCacheStats stats;
};

CacheState& state() {
  static CacheState instance;
  return instance;
}

void warn(const std::string& message) {
  std::fprintf(stderr, "convgraph: warning: %s\n", message.c_str());
}

std::string trim(std::string s) {
  const auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

Json key_json(const AutotuneKey& key) {
  Json fields = Json::object();
  for (const auto& [name, value] : key.fields) fields[name] = value;
  return Json{{"key_version", kAutotuneKeyVersion},
              {"tuner", key.tuner},
              {"device", key.device},
              {"libraries", autotune_library_versions()},
              {"fields", std::move(fields)}};
}

// One record as read from a line; an empty optional (and WHY) when the line is not a record.
std::optional<std::pair<std::string, AutotuneResult>> parse_record(const std::string& line,
                                                                   std::string* why) {
  const Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    *why = "not valid JSON";
    return std::nullopt;
  }
  if (!j.is_object() || !j.contains("key") || !j["key"].is_object() || !j.contains("choice") ||
      !j["choice"].is_string() || !j.contains("seconds") || !j["seconds"].is_number()) {
    *why = "not a record (expected an object with \"key\", \"choice\" and \"seconds\")";
    return std::nullopt;
  }
  AutotuneResult result;
  result.choice = j["choice"].get<std::string>();
  result.seconds = j["seconds"].get<double>();
  if (j.contains("timings")) {
    if (!j["timings"].is_object()) {
      *why = "\"timings\" is not an object";
      return std::nullopt;
    }
    for (const auto& [name, seconds] : j["timings"].items()) {
      if (!seconds.is_number()) {
        *why = fmt::format("the timing of \"{}\" is not a number", name);
        return std::nullopt;
      }
      result.timings.emplace_back(name, seconds.get<double>());
    }
  }
  return std::make_pair(dump(j["key"]), std::move(result));
}

// Reads what was appended to PATH since the last call (other processes keep appending while
// this one runs). Only complete lines are consumed: a line still being written is left for the
// next call. Called with the state's mutex held.
void refresh_from_file(CacheState& cache, const std::string& path) {
  FileState& file = cache.files[path];
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    // A file that does not exist yet is the normal first run, not a problem.
    if (errno != ENOENT && errno != ENOTDIR && !file.read_warned) {
      file.read_warned = true;
      warn(fmt::format("autotune cache {} cannot be read ({}); tuning results are not reused", path,
                       std::strerror(errno)));
    }
    return;
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    ::close(fd);
    return;
  }
  const auto size = static_cast<std::int64_t>(info.st_size);
  if (size < file.offset) {  // truncated or replaced: read it again from the start
    file.offset = 0;
    file.lines_read = 0;
  }
  std::string text;
  text.resize(static_cast<std::size_t>(size - file.offset));
  std::size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::pread(fd, text.data() + got, text.size() - got,
                              static_cast<off_t>(file.offset) + static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  text.resize(got);
  const std::size_t end = text.rfind('\n');
  if (end == std::string::npos) return;

  std::int64_t malformed = 0, first_bad_line = 0;
  std::string first_reason;
  std::size_t start = 0;
  while (start <= end) {
    const std::size_t newline = text.find('\n', start);
    const std::string line = trim(text.substr(start, newline - start));
    start = newline + 1;
    ++file.lines_read;
    if (line.empty()) continue;
    std::string why;
    auto record = parse_record(line, &why);
    if (!record) {
      if (malformed++ == 0) {
        first_bad_line = file.lines_read;
        first_reason = why;
      }
      continue;
    }
    // A result this process stored itself wins over what the file says (it may be the very
    // record this process appended); among file records, later lines win.
    auto it = cache.entries.find(record->first);
    if (it != cache.entries.end() && !it->second.from_file) continue;
    cache.entries[record->first] = Entry{std::move(record->second), true};
  }
  file.offset += static_cast<std::int64_t>(end + 1);
  if (malformed > 0) {
    cache.stats.malformed_lines += malformed;
    warn(
        fmt::format("autotune cache {}: skipped {} malformed line{} (line {}: {}); the other "
                    "records are used",
                    path, malformed, malformed == 1 ? "" : "s", first_bad_line, first_reason));
  }
}

// Appends LINE (newline included) with a single write() so that concurrent appenders never
// interleave: with O_APPEND, the kernel positions and writes each call as one unit. Called with
// the state's mutex held.
void append_line(CacheState& cache, const std::string& path, const std::string& line) {
  FileState& file = cache.files[path];
  if (file.write_failed) return;
  auto fail = [&](const std::string& why) {
    file.write_failed = true;
    warn(
        fmt::format("autotune cache {} cannot be written ({}); tuning results are kept in "
                    "memory for this process only",
                    path, why));
  };
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      fail(fmt::format("creating the directory {}: {}", parent.string(), ec.message()));
      return;
    }
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    fail(std::strerror(errno));
    return;
  }
  ssize_t written = -1;
  do {
    written = ::write(fd, line.data(), line.size());
  } while (written < 0 && errno == EINTR);  // nothing was written: retrying keeps one unit
  const int write_errno = errno;
  ::close(fd);
  if (written < 0) {
    fail(std::strerror(write_errno));
  } else if (static_cast<std::size_t>(written) != line.size()) {
    fail(fmt::format("only {} of {} bytes written", written, line.size()));
  } else {
    ++cache.stats.records_written;
  }
}

std::string read_cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  // x86 names the model "model name"; other architectures use other fields.
  for (const char* field : {"model name", "Model", "Hardware", "cpu model"}) {
    in.clear();
    in.seekg(0);
    while (std::getline(in, line)) {
      const auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      if (trim(line.substr(0, colon)) == field) {
        const std::string value = trim(line.substr(colon + 1));
        if (!value.empty()) return value;
      }
    }
  }
  return "unknown CPU";
}

}  // namespace

AutotuneCacheOptions AutotuneCacheOptions::from_config(const Config& config) {
  AutotuneCacheOptions options;
  const std::string mode = config.get("autotune.cache");
  options.mode = mode == "off"         ? AutotuneCacheMode::off
                 : mode == "read_only" ? AutotuneCacheMode::read_only
                                       : AutotuneCacheMode::read_write;
  if (options.mode != AutotuneCacheMode::off) {
    options.path = config.get("autotune.cache_path");
    if (options.path.empty()) options.path = default_autotune_cache_path();
  }
  return options;
}

std::string default_autotune_cache_path() {
  // The XDG base-directory specification says relative values are to be ignored.
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg != nullptr && xdg[0] == '/') {
    return (std::filesystem::path(xdg) / "convgraph" / "autotune.jsonl").string();
  }
  const char* home = std::getenv("HOME");
  if (home != nullptr && home[0] != '\0') {
    return (std::filesystem::path(home) / ".cache" / "convgraph" / "autotune.jsonl").string();
  }
  return "";
}

std::string AutotuneKey::canonical() const {
  return dump(key_json(*this));
}

std::optional<AutotuneResult> autotune_lookup(const AutotuneKey& key,
                                              const AutotuneCacheOptions& options) {
  const std::string canonical = key.canonical();
  CacheState& cache = state();
  std::lock_guard<std::mutex> lock(cache.mutex);
  auto found = cache.entries.find(canonical);
  // Only a miss reads the file: what is already in memory needs no system call.
  if (found == cache.entries.end() && options.mode != AutotuneCacheMode::off &&
      !options.path.empty()) {
    refresh_from_file(cache, options.path);
    found = cache.entries.find(canonical);
  }
  if (found == cache.entries.end()) {
    ++cache.stats.misses;
    return std::nullopt;
  }
  ++(found->second.from_file ? cache.stats.file_hits : cache.stats.memory_hits);
  return found->second.result;
}

void autotune_store(const AutotuneKey& key, const AutotuneResult& result,
                    const AutotuneCacheOptions& options) {
  Json record{{"key", key_json(key)},
              {"choice", result.choice},
              {"seconds", result.seconds},
              {"timings", Json::object()},
              {"written_unix_time", static_cast<std::int64_t>(std::time(nullptr))}};
  for (const auto& [name, seconds] : result.timings) record["timings"][name] = seconds;
  const std::string canonical = dump(record["key"]);
  const std::string line = dump(record) + "\n";

  CacheState& cache = state();
  std::lock_guard<std::mutex> lock(cache.mutex);
  cache.entries[canonical] = Entry{result, false};
  if (options.mode == AutotuneCacheMode::read_write && !options.path.empty()) {
    append_line(cache, options.path, line);
  }
}

AutotuneCacheStats autotune_cache_stats() {
  CacheState& cache = state();
  std::lock_guard<std::mutex> lock(cache.mutex);
  return cache.stats;
}

void clear_autotune_memory_cache() {
  CacheState& cache = state();
  std::lock_guard<std::mutex> lock(cache.mutex);
  cache.entries.clear();
  cache.files.clear();
  cache.stats = {};
}

std::string cpu_device_fingerprint(std::int64_t threads_flag) {
  static const std::string model = read_cpu_model();
  const unsigned cores = std::thread::hardware_concurrency();
  // The kernels use the flag's count, or OpenMP's default (all cores, or OMP_NUM_THREADS).
  const std::int64_t threads = threads_flag > 0 ? threads_flag : omp_get_max_threads();
  return fmt::format("cpu: {}, {} logical cores, {} threads", model, cores, threads);
}

std::string autotune_library_versions() {
  static const std::string versions = [] {
    std::string text =
        fmt::format("convgraph {}; OpenBLAS {}", CONVGRAPH_VERSION, trim(openblas_get_config()));
#if CONVGRAPH_HAVE_ONEDNN
    const dnnl_version_t* v = dnnl_version();
    text += fmt::format("; oneDNN {}.{}.{} ({})", v->major, v->minor, v->patch, v->hash);
#endif
    return text;
  }();
  return versions;
}

}  // namespace convgraph
