#include "convgraph/runtime/autotune_cache_flags.hpp"

#include "convgraph/base/flag_builders.hpp"

namespace convgraph {

void declare_autotune_cache_flags(std::vector<FlagSpec>& flags) {
  flags.push_back(choice_flag("autotune.cache", "read_write", {"read_write", "read_only", "off"},
                              "On-disk autotune cache: read_write, read_only (never appended "
                              "to), off (time again in every process)"));
  flags.push_back(
      string_flag("autotune.cache_path", "",
                  "Autotune cache file; empty = $XDG_CACHE_HOME/convgraph/autotune.jsonl, else "
                  "~/.cache/convgraph/autotune.jsonl",
                  nullptr, "a file path, or empty"));
}

}  // namespace convgraph
