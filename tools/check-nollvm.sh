#!/usr/bin/env bash
# Builds and tests convgraph without LLVM (CONVGRAPH_WITH_LLVM=OFF), the configuration in which
# fused kernels run on the interpreter, so that LLVM stays optional (docs/codegen.md, "Builds
# without LLVM"):
#   1. configure and build everything with tools/build.sh (-Werror) in BUILD_DIR;
#   2. `convgraph --version` must say that LLVM is left out and that fused kernels run on the
#      interpreter;
#   3. the CPU tests (ctest -LE 'slow|cuda'): the tests that need LLVM are listed as skipped, the
#      others check the interpreter.
# Usage: bash tools/check-nollvm.sh [BUILD_DIR]   (default: build-nollvm)
# It is a whole second build, so tools/test.sh (the CI run) does not include it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/check-build.sh
source "$root/tools/check-build.sh"
check_build check-nollvm "${1:-build-nollvm}" "-DCONVGRAPH_WITH_LLVM=OFF" \
  "LLVM no (CONVGRAPH_WITH_LLVM=OFF; fused kernels run on the interpreter)" \
  "the interpreter back end"
