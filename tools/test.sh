#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite, then the format check.
# Usage: bash tools/test.sh [BUILD_DIR]   (default: build)
# Runs every CTest label except `slow` (CONVGRAPH_SLOW_TESTS=1 adds it). The `cuda` tests run too:
# on a machine without a usable GPU each one exits with code 77 and CTest lists it as Skipped.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${1:-build}

bash "$root/tools/setup.sh"
bash "$root/tools/build.sh" "$build_dir"

if [[ "${CONVGRAPH_SLOW_TESTS:-0}" == 1 ]]; then
  exclude='^$'
  echo "test: running labels cpu, cuda, slow (cuda tests skip without a GPU)"
else
  exclude='^(slow)$'
  echo "test: running labels cpu, cuda (cuda tests skip without a GPU; CONVGRAPH_SLOW_TESTS=1 adds slow)"
fi

status=0
# --timeout is the limit for tests that set none themselves, so that a hang cannot eat the CI run.
ctest --test-dir "$build_dir" --output-on-failure --no-tests=error -j "$(nproc)" \
  --timeout 600 -LE "$exclude" || status=1

echo "test: format check"
bash "$root/tools/format.sh" --check || status=1

if ((status != 0)); then
  echo "test: FAILED" >&2
fi
exit "$status"
