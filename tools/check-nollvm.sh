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
build_dir=${1:-build-nollvm}

CONVGRAPH_CMAKE_ARGS="${CONVGRAPH_CMAKE_ARGS:-} -DCONVGRAPH_WITH_LLVM=OFF" \
  bash "$root/tools/build.sh" "$build_dir"

status=0
version=$("$build_dir/tools/convgraph" --version)
echo "$version"
if ! grep -q "LLVM no (CONVGRAPH_WITH_LLVM=OFF; fused kernels run on the interpreter)" \
  <<<"$version"; then
  echo "check-nollvm: convgraph --version does not report the interpreter back end" >&2
  status=1
fi

ctest --test-dir "$build_dir" --output-on-failure --no-tests=error -j "$(nproc)" \
  --timeout 600 -LE 'slow|cuda' || status=1

if ((status != 0)); then
  echo "check-nollvm: FAILED" >&2
fi
exit "$status"
