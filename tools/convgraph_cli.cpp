// The convgraph command-line tool: inspect the flags and the build.
//   convgraph flags            every flag with its value, default and description
//   convgraph flags --check    validate CONVGRAPH_FLAGS and exit non-zero with the error if bad
//   convgraph passes [--flags F]  the passes the flags select, in order
//   convgraph impls [--flags F]   the convolution implementations and whether the flags allow each
//   convgraph info             version and optional components of this build
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "convgraph/convgraph.hpp"
#include "convgraph/optimizer/conv_registry.hpp"
#include "convgraph/optimizer/pass_database.hpp"

using namespace convgraph;

int main(int argc, char** argv) {
  CLI::App app{"convgraph: a symbolic computation-graph compiler for convolutional networks"};
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
      std::printf("convgraph %s\n", CONVGRAPH_VERSION);
      std::printf("  CUDA:   %s\n", CONVGRAPH_HAVE_CUDA ? "yes" : "no");
      std::printf("  cuDNN:  %s\n", CONVGRAPH_HAVE_CUDNN ? "yes" : "no");
      std::printf("  oneDNN: %s\n", CONVGRAPH_HAVE_ONEDNN ? "yes" : "no");
      std::printf("  LLVM:   %s\n", CONVGRAPH_HAVE_LLVM ? "yes" : "no");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "convgraph: %s\n", e.what());
    return 2;
  }
  return 0;
}
