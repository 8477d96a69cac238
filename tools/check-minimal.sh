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
# shellcheck source=tools/check-build.sh
source "$root/tools/check-build.sh"
check_build check-minimal "${1:-build-minimal}" \
  "-DCONVGRAPH_WITH_ONEDNN=OFF -DCONVGRAPH_WITH_CUDA=OFF -DCONVGRAPH_WITH_CUDNN=OFF" \
  "CUDA no, cuDNN no, oneDNN no" \
  "CUDA, cuDNN and oneDNN left out"
