#!/usr/bin/env bash
# Configures and builds convgraph: Ninja, Release, warnings as errors, all cores.
# Usage: bash tools/build.sh [BUILD_DIR]   (default: build, relative to the current directory)
# Extra CMake options can be passed through CONVGRAPH_CMAKE_ARGS, e.g.
#   CONVGRAPH_CMAKE_ARGS="-DCONVGRAPH_WITH_CUDA=OFF" bash tools/build.sh
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${1:-build}

launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
else
  # Clear a launcher left in the cache by an earlier configure on a machine that had ccache.
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER= -DCMAKE_CUDA_COMPILER_LAUNCHER=)
fi

read -r -a extra_args <<<"${CONVGRAPH_CMAKE_ARGS:-}"

cmake -S "$root" -B "$build_dir" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  -DCONVGRAPH_WARNINGS_AS_ERRORS=ON \
  "${launcher[@]}" "${extra_args[@]}"
cmake --build "$build_dir" -j "$(nproc)"
