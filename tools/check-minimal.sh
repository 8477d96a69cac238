#!/usr/bin/env bash
# Builds and tests convgraph without oneDNN and CUDA (CONVGRAPH_WITH_ONEDNN=OFF,
# CONVGRAPH_WITH_CUDA=OFF, CONVGRAPH_WITH_CUDNN=OFF): the CPU configuration with only OpenBLAS
# and LLVM, in which every convolution lowers to CorrMM, Winograd or the depthwise loops. Both
# components are optional at build time, and a build that has them compiles none of the code
# guarded for their absence, so this keeps that code building and its tests passing:
#   1. configure and build everything with tools/build.sh (-Werror) in BUILD_DIR;
#   2. `convgraph --version` must say that CUDA, cuDNN and oneDNN are left out;
#   3. the CPU tests (ctest -LE 'slow|cuda'): the tests that need oneDNN are listed as skipped.
# Usage: bash tools/check-minimal.sh [BUILD_DIR]   (default: build-minimal)
# It is a whole second build, so tools/test.sh (the CI run) does not include it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${1:-build-minimal}

CONVGRAPH_CMAKE_ARGS="${CONVGRAPH_CMAKE_ARGS:-} -DCONVGRAPH_WITH_ONEDNN=OFF \
-DCONVGRAPH_WITH_CUDA=OFF -DCONVGRAPH_WITH_CUDNN=OFF" bash "$root/tools/build.sh" "$build_dir"

status=0
version=$("$build_dir/tools/convgraph" --version)
echo "$version"
if ! grep -q "CUDA no, cuDNN no, oneDNN no" <<<"$version"; then
  echo "check-minimal: convgraph --version does not report CUDA, cuDNN and oneDNN left out" >&2
  status=1
fi

ctest --test-dir "$build_dir" --output-on-failure --no-tests=error -j "$(nproc)" \
  --timeout 600 -LE 'slow|cuda' || status=1

if ((status != 0)); then
  echo "check-minimal: FAILED" >&2
fi
exit "$status"
