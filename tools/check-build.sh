#!/usr/bin/env bash
# The shared body of tools/check-minimal.sh and tools/check-nollvm.sh, which build and test
# convgraph with optional components left out:
#   check_build NAME BUILD_DIR CMAKE_ARGS VERSION_TEXT WHAT
#   1. configure and build everything with tools/build.sh (-Werror) in BUILD_DIR, with CMAKE_ARGS
#      added to CONVGRAPH_CMAKE_ARGS;
#   2. `convgraph --version` must contain VERSION_TEXT (else "NAME: convgraph --version does not
#      report WHAT");
#   3. the CPU tests (ctest -LE 'slow|cuda').
# Returns 0 when all passed; says "NAME: FAILED" otherwise. Meant to be sourced.

check_build() {
  local name=$1 build_dir=$2 cmake_args=$3 version_text=$4 what=$5
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  CONVGRAPH_CMAKE_ARGS="${CONVGRAPH_CMAKE_ARGS:-} $cmake_args" bash "$root/tools/build.sh" \
    "$build_dir"

  local status=0 version
  version=$("$build_dir/tools/convgraph" --version)
  echo "$version"
  if ! grep -qF "$version_text" <<<"$version"; then
    echo "$name: convgraph --version does not report $what" >&2
    status=1
  fi

  ctest --test-dir "$build_dir" --output-on-failure --no-tests=error -j "$(nproc)" \
    --timeout 600 -LE 'slow|cuda' || status=1

  if ((status != 0)); then
    echo "$name: FAILED" >&2
  fi
  return "$status"
}
