// Every module's flag declarations, in display order: the order of `convgraph flags`,
// Config::describe() and the table of docs/flags.md. One line per module; a new module that
// reads flags adds its declare_<module>_flags() here, where its flags should be listed.
//
// The configuration mechanism lives in base/, the bottom layer, which includes no header of the
// layers above it; the flags are declared by the modules that read them, in every layer. So
// base/config.hpp declares declare_all_flags() and this file, which sits above every layer and
// knows them all, defines it: the dependency is turned around at link time, with no static
// registration and no initialisation order to get wrong. Config::specs() calls it once and checks
// the result (a name declared by two modules is a ValueError naming both places).
#include "convgraph/base/config.hpp"
#include "convgraph/codegen/codegen_flags.hpp"
#include "convgraph/ops/conv/conv_flags.hpp"
#include "convgraph/ops/tensor/tensor_flags.hpp"
#include "convgraph/optimizer/compile_flags.hpp"
#include "convgraph/optimizer/conv_meta_flags.hpp"
#include "convgraph/optimizer/conv_registry_flags.hpp"
#include "convgraph/optimizer/pass_database_flags.hpp"
#include "convgraph/planner/debug_mode_flags.hpp"
#include "convgraph/planner/plan_flags.hpp"
#include "convgraph/runtime/autotune_cache_flags.hpp"
#include "convgraph/runtime/cpu_flags.hpp"
#include "convgraph/runtime/profile_flags.hpp"

namespace convgraph {

std::vector<FlagSpec> declare_all_flags() {
  std::vector<FlagSpec> flags;
  declare_compile_flags(flags);         // mode, device
  declare_tensor_flags(flags);          // floatX
  declare_pass_database_flags(flags);   // optimizer_including/excluding/requiring, print_*, ...
  declare_conv_registry_flags(flags);   // conv.impl
  declare_conv_flags(flags);            // conv.assert_shape, dnn.* (every build, any backend)
  declare_conv_meta_flags(flags);       // metaopt.*
  declare_autotune_cache_flags(flags);  // autotune.cache, autotune.cache_path
  declare_cpu_flags(flags);             // threads, blas.coretype
  declare_codegen_flags(flags);         // codegen.*
  declare_plan_flags(flags);            // allow_gc, schedule
  declare_profile_flags(flags);         // profile, profile.trace_file
  declare_debug_mode_flags(flags);      // debugmode.rtol, debugmode.atol
  return flags;
}

}  // namespace convgraph
