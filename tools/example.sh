#!/usr/bin/env bash
# Sets up, builds and runs the main example.
# Usage: bash tools/example.sh [BUILD_DIR]   (default: build)
set -euo pipefail

# The main example: one executable per examples/*.cpp, named after the file.
MAIN_EXAMPLE=train_convnet

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${1:-build}

bash "$root/tools/setup.sh"
bash "$root/tools/build.sh" "$build_dir"

example="$build_dir/examples/$MAIN_EXAMPLE"
if [[ ! -x "$example" ]]; then
  echo "example: $example was not built (is there an examples/$MAIN_EXAMPLE.cpp?)" >&2
  exit 1
fi
echo "example: running $example"
exec "$example"
