// The convgraph command-line tool: inspect the flags and the build.
//   convgraph flags            every flag with its value, default and description
//   convgraph flags --check    validate CONVGRAPH_FLAGS and exit non-zero with the error if bad
//   convgraph passes [--flags F]  the passes the flags select, in order
//   convgraph impls [--flags F]   the convolution implementations and whether the flags allow each
//   convgraph info             version and optional components of this build
//   convgraph --version        the same, in two lines
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>

#include "cli_build_info.hpp"
#include "convgraph/codegen/fused_kernel.hpp"
#include "convgraph/convgraph.hpp"
#include "convgraph/optimizer/conv_registry.hpp"
#include "convgraph/optimizer/pass_database.hpp"

using namespace convgraph;

namespace {

const char* yes_no(bool built_in) {
  return built_in ? "yes" : "no";
}

// "convgraph 0.1.0 (git v0.1.0-12-gabcdef0)": the version, and the commit the build was
// configured from where it is known.
std::string version_line() {
  std::string line = std::string("convgraph ") + CONVGRAPH_VERSION;
  const std::string describe = CONVGRAPH_CLI_GIT_DESCRIBE;
  if (!describe.empty()) line += " (git " + describe + ")";
  return line;
}

// Whether the fused-kernel code generator's LLVM back end is built in, with LLVM's version, or why
// it is left out (fused kernels then run on the interpreter).
std::string llvm_state() {
  if (CONVGRAPH_HAVE_LLVM) {
    return std::string("yes (") + CONVGRAPH_CLI_LLVM_VERSION + ", the fused-kernel JIT back end)";
  }
  return std::string("no (") + std::string(codegen::llvm_backend_missing_reason()) +
         "; fused kernels run on the interpreter)";
}

std::string version_text() {
  return version_line() + "\nbuilt in: CUDA " + yes_no(CONVGRAPH_HAVE_CUDA) + ", cuDNN " +
         yes_no(CONVGRAPH_HAVE_CUDNN) + ", oneDNN " + yes_no(CONVGRAPH_HAVE_ONEDNN) + "; LLVM " +
         llvm_state();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"convgraph: a symbolic computation-graph compiler for convolutional networks"};
  app.set_version_flag("--version", version_text(),
                       "print the version and the built-in components");
  app.require_subcommand(1);

  auto* flags = app.add_subcommand("flags", "print every flag with its value and default");
  bool check_only = false;
  flags->add_flag("--check", check_only, "only validate CONVGRAPH_FLAGS");
  auto* passes = app.add_subcommand("passes", "list the passes the flags select, in run order");
  std::string extra_flags;
  passes->add_option("--flags", extra_flags, "flags applied on top of CONVGRAPH_FLAGS (k=v,k=v)");
  auto* impls = app.add_subcommand(
      "impls", "list the convolution implementations (names for conv.impl) and their status");
  impls->add_option("--flags", extra_flags, "flags applied on top of CONVGRAPH_FLAGS (k=v,k=v)");
  auto* info = app.add_subcommand("info", "print the version and the optional components");

  CLI11_PARSE(app, argc, argv);
  try {
    if (flags->parsed()) {
      const Config config = Config::from_environment();
      if (check_only) {
        std::puts("CONVGRAPH_FLAGS is valid");
      } else {
        std::fputs(config.describe().c_str(), stdout);
      }
    } else if (passes->parsed()) {
      Config config = Config::from_environment();
      if (!extra_flags.empty()) config.apply(extra_flags);
      std::fputs(describe_selected_passes(config).c_str(), stdout);
    } else if (impls->parsed()) {
      Config config = Config::from_environment();
      if (!extra_flags.empty()) config.apply(extra_flags);
      std::fputs(describe_conv_implementations(config).c_str(), stdout);
    } else if (info->parsed()) {
      std::printf("%s\n", version_line().c_str());
      std::printf("  CUDA:   %s\n", yes_no(CONVGRAPH_HAVE_CUDA));
      std::printf("  cuDNN:  %s\n", yes_no(CONVGRAPH_HAVE_CUDNN));
      std::printf("  oneDNN: %s\n", yes_no(CONVGRAPH_HAVE_ONEDNN));
      std::printf("  LLVM:   %s\n", llvm_state().c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "convgraph: %s\n", e.what());
    return 2;
  }
  return 0;
}
