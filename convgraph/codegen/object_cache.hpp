// The on-disk cache of generated code: one object file per key in a cache folder, so that a
// second process running the same fused kernels generates nothing.
//
// An entry is "<16 hex digits of the key's hash>.o" holding a header line, the full key, the
// object's size, the object and an end marker. A reader accepts an entry only when all of them
// check out; anything else (another key under the same hash, a truncated or foreign file) is
// ignored with one warning per file and the code is generated again and written over it. Writes
// go to a temporary file in the same folder, then rename() into place, so a reader never sees a
// half-written entry and concurrent writers of one key leave one whole file.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "convgraph/base/config.hpp"

namespace convgraph::codegen {

struct ObjectCacheOptions {
  bool enabled = true;
  std::string dir;  // empty: no folder could be determined (no HOME), so nothing is cached
};

// From the flags codegen.disk_cache and codegen.cache_dir: those of the compile() in progress on
// this thread (ScopedObjectCacheOptions), else the process-wide flags.
ObjectCacheOptions object_cache_options();
// The cache options of CONFIG for this thread while it lives: compile() sets them, so that a
// function's flags (not only the process's) choose where its kernels are cached.
class ScopedObjectCacheOptions {
 public:
  explicit ScopedObjectCacheOptions(const Config& config);
  ~ScopedObjectCacheOptions();
  ScopedObjectCacheOptions(const ScopedObjectCacheOptions&) = delete;
  ScopedObjectCacheOptions& operator=(const ScopedObjectCacheOptions&) = delete;

 private:
  ObjectCacheOptions options_;
  const ObjectCacheOptions* previous_;
};
// $XDG_CACHE_HOME/convgraph/codegen, else ~/.cache/convgraph/codegen, else empty.
std::string default_codegen_cache_dir();
// The entry's path for KEY in DIR.
std::string object_cache_path(const std::string& dir, const std::string& key);

// The object stored for KEY, or nullopt when there is none or it is rejected (see above).
std::optional<std::string> read_cached_object(const std::string& dir, const std::string& key);
// Stores OBJECT for KEY; a failure to write is a warning (once per folder), never an error.
void write_cached_object(const std::string& dir, const std::string& key, std::string_view object);

}  // namespace convgraph::codegen
