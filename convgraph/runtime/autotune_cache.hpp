// The autotune cache: choices made by timing (the meta-optimizer's winners today, vendor-library
// algorithms later) remembered in memory and in an append-only JSON-lines file, so that a second
// process compiling the same graph on the same machine times nothing.
//
// A result is keyed by what can change the answer: the device fingerprint, the library versions,
// the problem (for a convolution: direction, ConvParams, shapes, dtype, the candidates offered)
// and a key version bumped whenever the meaning of a key changes. Keys are compared as canonical
// JSON text, so a record written by another build or machine simply never matches.
//
// The file is shared by every process of the user: each record is one complete line written with
// one write() on a descriptor opened with O_APPEND, so concurrent appenders never interleave
// lines. Reading is forgiving: a malformed line is skipped with a warning, an unreadable or
// unwritable file is a warning, never an error (the cache only saves time).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "convgraph/base/config.hpp"

namespace convgraph {

// Bump when the fields of a key, or how a result is interpreted, change: old records then stop
// matching instead of being misread. Also when an implementation starts taking problems it
// declined (its candidate name is in the key either way): 4 when Winograd took 3-D convolutions.
inline constexpr int kAutotuneKeyVersion = 4;

enum class AutotuneCacheMode : unsigned char {
  read_write,  // read the file, append new results
  read_only,   // read the file, never append
  off,         // no file: results are remembered in memory for this process only
};

struct AutotuneCacheOptions {
  AutotuneCacheMode mode = AutotuneCacheMode::read_write;
  // The file; empty when there is none (mode off, or no cache directory could be found).
  std::string path;

  // From the flags autotune.cache and autotune.cache_path.
  static AutotuneCacheOptions from_config(const Config& config);
};

// $XDG_CACHE_HOME/convgraph/autotune.jsonl when XDG_CACHE_HOME is an absolute path, else
// $HOME/.cache/convgraph/autotune.jsonl; empty when neither variable is usable.
std::string default_autotune_cache_path();

// What identifies one tuning problem. The cache adds the library versions and the key version.
struct AutotuneKey {
  std::string tuner;   // which tuner made the choice, e.g. "conv_meta"
  std::string device;  // a device fingerprint, e.g. cpu_device_fingerprint()
  // The problem, as named strings (order does not matter; names must be distinct).
  std::vector<std::pair<std::string, std::string>> fields;

  // The canonical text compared between processes (JSON with sorted keys).
  std::string canonical() const;
};

struct AutotuneResult {
  std::string choice;  // the winner, by a name the tuner understands
  double seconds = 0;  // its measured time
  // Every candidate timed, for the record (what lost and by how much).
  std::vector<std::pair<std::string, double>> timings;
};

// The result for KEY: from memory, else from the file (read on first use and re-read when other
// processes have appended to it). std::nullopt when nothing is known.
std::optional<AutotuneResult> autotune_lookup(const AutotuneKey& key,
                                              const AutotuneCacheOptions& options);
// Remembers RESULT for KEY in memory and, in read_write mode, appends it to the file.
void autotune_store(const AutotuneKey& key, const AutotuneResult& result,
                    const AutotuneCacheOptions& options);

// Counters since the process started (or since clear_autotune_memory_cache).
struct AutotuneCacheStats {
  std::int64_t memory_hits = 0;      // answered by a result this process stored
  std::int64_t file_hits = 0;        // answered by a result read from the file
  std::int64_t misses = 0;           // nothing known
  std::int64_t records_written = 0;  // lines appended to a file
  std::int64_t malformed_lines = 0;  // lines skipped while reading a file
};
AutotuneCacheStats autotune_cache_stats();
// Forgets every result held in memory and every file read, and zeroes the counters (for tests
// and programs that change the cache file).
void clear_autotune_memory_cache();

// "cpu: <model name from /proc/cpuinfo>, <n> logical cores, threads=<t>": what decides how fast a
// CPU kernel runs. THREADS_FLAG is the value of the flag `threads` (0 = all cores; the number
// actually used is recorded).
std::string cpu_device_fingerprint(std::int64_t threads_flag);
// "convgraph <version>; OpenBLAS <config>[; oneDNN <version>]".
std::string autotune_library_versions();

}  // namespace convgraph
