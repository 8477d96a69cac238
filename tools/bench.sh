#!/usr/bin/env bash
# Conv benchmarks: convgraph on the conv suite, the PyTorch peer, and the side-by-side comparison.
# See docs/benchmarks.md.
#
# Usage:
#   bash tools/bench.sh cpu OUT.json [ARGS...]       build, then time convgraph on the CPU
#                                                    (ARGS go to convgraph_bench_conv, e.g.
#                                                    --only res4,grouped --min-time 0.2)
#   bash tools/bench.sh peer-cpu OUT.json [ARGS...]  PyTorch on the CPU (ARGS go to peer_cpu.py)
#   bash tools/bench.sh compare OURS.json PEER.json [ARGS...]   speedups (compare.py)
#   bash tools/bench.sh sitting DIR                  peer-cpu, cpu and compare in one sitting,
#                                                    into DIR/{peer_cpu,ours_cpu}.json + compare.txt
#   bash tools/bench.sh compile [OUT.json]           build, then convgraph_compile_bench
#   bash tools/bench.sh gpu ...                      not yet implemented
#
# Environment:
#   CONVGRAPH_SUITE          the suite (default: ../shared/bench/suite.json from the repository
#                            root); peer_cpu.py and compare.py are taken from its folder
#   CONVGRAPH_BENCH_BUILD    build folder (default: build in the repository root)
#   CONVGRAPH_BENCH_THREADS  threads for both sides (default 2)
#   CONVGRAPH_BENCH_NO_BUILD=1  use the existing build as it is
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
suite=${CONVGRAPH_SUITE:-$root/../shared/bench/suite.json}
build_dir=${CONVGRAPH_BENCH_BUILD:-$root/build}
threads=${CONVGRAPH_BENCH_THREADS:-2}
python=/usr/bin/python3

say() { echo "bench: $*"; }
die() {
  echo "bench: $*" >&2
  exit 2
}
usage() {
  sed -n '5,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

need_suite() {
  [[ -f "$suite" ]] || die "no suite at $suite (set CONVGRAPH_SUITE)"
  suite=$(cd "$(dirname "$suite")" && pwd)/$(basename "$suite")
  bench_dir=$(dirname "$suite")
}

build() {
  if [[ "${CONVGRAPH_BENCH_NO_BUILD:-0}" == 1 ]]; then return; fi
  bash "$root/tools/build.sh" "$build_dir"
}

load() { cut -d' ' -f1-3 /proc/loadavg; }

as_root() {
  if ((EUID == 0)); then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    die "not root and no sudo: install python3-torch and libjemalloc2 as root"
  fi
}

# The peer's packages (peer_cpu.py's README): Debian's python3-torch and jemalloc.
peer_setup() {
  local missing=()
  "$python" -c 'import torch' >/dev/null 2>&1 || missing+=(python3-torch)
  [[ -e /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ]] || missing+=(libjemalloc2)
  if ((${#missing[@]} > 0)); then
    say "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}"
  fi
}

run_cpu() {
  local out=$1
  shift
  need_suite
  build
  local exe="$build_dir/tools/convgraph_bench_conv"
  [[ -x "$exe" ]] || die "$exe was not built (CONVGRAPH_BUILD_TOOLS=OFF?)"
  say "convgraph, $threads threads, load $(load)"
  "$exe" --suite "$suite" --device cpu --threads "$threads" --out "$out" "$@"
  say "load after: $(load)"
}

run_peer_cpu() {
  local out=$1
  shift
  need_suite
  peer_setup
  say "PyTorch peer, $threads threads, load $(load)"
  "$python" "$bench_dir/peer_cpu.py" --suite "$suite" --threads "$threads" --out "$out" "$@"
  say "load after: $(load)"
}

run_compare() {
  need_suite
  "$python" "$bench_dir/compare.py" "$@"
}

cmd=${1:-}
[[ -n "$cmd" ]] || usage
shift
case "$cmd" in
  cpu)
    (($# >= 1)) || usage
    run_cpu "$@"
    ;;
  peer-cpu)
    (($# >= 1)) || usage
    run_peer_cpu "$@"
    ;;
  compare)
    (($# >= 2)) || usage
    run_compare "$@"
    ;;
  sitting)
    (($# == 1)) || usage
    mkdir -p "$1"
    build
    CONVGRAPH_BENCH_NO_BUILD=1 run_peer_cpu "$1/peer_cpu.json"
    CONVGRAPH_BENCH_NO_BUILD=1 run_cpu "$1/ours_cpu.json"
    run_compare "$1/ours_cpu.json" "$1/peer_cpu.json" | tee "$1/compare.txt"
    ;;
  compile)
    build
    exe="$build_dir/tools/convgraph_compile_bench"
    [[ -x "$exe" ]] || die "$exe was not built (CONVGRAPH_BUILD_TOOLS=OFF?)"
    if (($# >= 1)); then "$exe" --out "$1"; else "$exe"; fi
    ;;
  gpu)
    die "gpu: not yet implemented (GPU backend issue): convgraph_bench_conv has no --device gpu yet"
    ;;
  *) usage ;;
esac
