#include "convgraph/codegen/codegen_flags.hpp"

#include "convgraph/base/flag_builders.hpp"

namespace convgraph {

void declare_codegen_flags(std::vector<FlagSpec>& flags) {
  flags.push_back(choice_flag("codegen.backend", "auto", {"auto", "llvm", "interpreter"},
                              "Back end of fused kernels: auto = LLVM when built in, else the "
                              "interpreter; llvm (an error in a build without LLVM); interpreter"));
  flags.push_back(choice_flag("codegen.fallback", "error", {"error", "interpreter"},
                              "When LLVM cannot compile a fused kernel: error (a ConvGraphError "
                              "with LLVM's message) or interpreter (a logged fallback)"));
  flags.push_back(choice_flag("codegen.disk_cache", "on", {"on", "off"},
                              "On-disk cache of generated code: on (reuse and store object files), "
                              "off (generate in every process)"));
  flags.push_back(string_flag("codegen.cache_dir", "",
                              "Folder of the generated-code cache; empty = "
                              "$XDG_CACHE_HOME/convgraph/codegen, else ~/.cache/convgraph/codegen",
                              nullptr, "a folder path, or empty"));
}

}  // namespace convgraph
