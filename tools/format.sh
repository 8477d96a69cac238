#!/usr/bin/env bash
# Formats the C++ and CUDA sources with clang-format (the style is in .clang-format).
# Usage: bash tools/format.sh            rewrite the files in place
#        bash tools/format.sh --check    change nothing; fail listing the files that need formatting
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

check=0
case "${1:-}" in
  "") ;;
  --check) check=1 ;;
  *) echo "usage: bash tools/format.sh [--check]" >&2; exit 2 ;;
esac

clang_format=${CLANG_FORMAT:-clang-format}
if ! command -v "$clang_format" >/dev/null 2>&1; then
  echo "format: $clang_format not found (Debian: apt-get install clang-format)" >&2
  exit 1
fi

# The files git tracks or would track (untracked but not ignored), else every source outside
# build folders.
files=()
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  while IFS= read -r -d '' file; do
    [[ -f "$file" ]] && files+=("$file")
  done < <(git ls-files -z --cached --others --exclude-standard -- \
             '*.hpp' '*.cpp' '*.cu' '*.cuh' | sort -zu)
else
  while IFS= read -r -d '' file; do
    files+=("$file")
  done < <(find . -path './build*' -prune -o -path './.git' -prune -o -type f \
             \( -name '*.hpp' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' \) -print0 |
           sort -z)
fi
if ((${#files[@]} == 0)); then
  echo "format: no source files found"
  exit 0
fi

if ((check)); then
  # One file at a time, so that the report names each file once with its first few differences
  # instead of every line of every unformatted file.
  unformatted=0
  for file in "${files[@]}"; do
    if ! output=$("$clang_format" --dry-run --Werror "$file" 2>&1); then
      ((unformatted += 1))
      echo "format: $file is not formatted:" >&2
      head -n 6 <<<"$output" | sed 's/^/    /' >&2
    fi
  done
  if ((unformatted > 0)); then
    echo "format: $unformatted of ${#files[@]} files need formatting: run bash tools/format.sh" >&2
    exit 1
  fi
  echo "format: ${#files[@]} files are formatted"
else
  "$clang_format" -i "${files[@]}"
fi
