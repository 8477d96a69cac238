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
#   bash tools/bench.sh graph-scale [OUT.json] [ARGS...]  build, then convgraph_bench_graph_scale
#                                                    (ARGS go to it, e.g. --sizes 10000,100000),
#                                                    then peer_op_overhead.py (PyTorch's per-op
#                                                    overhead) into OUT.peer.json when torch is
#                                                    importable
#   bash tools/bench.sh net [OUT.json] [ARGS...]     build, then convgraph_bench_net: one training
#                                                    step of resnet50_conv (ARGS go to it, e.g.
#                                                    --net mobilenet_conv --batch 8 --steps 5)
#   bash tools/bench.sh net-sitting DIR [PAIRS] [ARGS...]   convgraph_bench_net and its PyTorch
#                                                    peer interleaved, PAIRS pairs (default 4), each
#                                                    a fresh process: DIR/ours_K.json,
#                                                    DIR/peer_K.json, DIR/ratios.txt (ARGS go to
#                                                    both sides' --net/--batch/--steps/--warmup)
#   bash tools/bench.sh gpu DIR|OUT.json [ARGS...]   on the GPU machine: build (build-gpu), time
#                                                    convgraph on the GPU per precision, then
#                                                    peer_gpu.py, then compare: DIR/ours_gpu.json,
#                                                    DIR/peer_gpu.json, DIR/compare_gpu.txt (or
#                                                    OUT.json, OUT.peer.json, OUT.compare.txt);
#                                                    ARGS go to convgraph_bench_conv, e.g.
#                                                    --only res2,depthwise --impls cudnn
#   bash tools/bench.sh compare-gpu OURS.json PEER.json   every precision, best and per impl
#
# Environment:
#   CONVGRAPH_SUITE          the suite (default: ../shared/bench/suite.json from the repository
#                            root, else .bench/suite.json); the peers and compare.py are taken
#                            from its folder
#   CONVGRAPH_BENCH_BUILD    build folder (default: build in the repository root; gpu: build-gpu,
#                            configured with -DCONVGRAPH_WITH_CUDA=ON -DCONVGRAPH_WITH_CUDNN=ON)
#   CONVGRAPH_BENCH_THREADS  threads for both sides (default 2)
#   CONVGRAPH_BENCH_NO_BUILD=1  use the existing build as it is
#   gpu only: CONVGRAPH_GPU_PRECISIONS (default "fp32 tf32 fp16"), CONVGRAPH_PEER_ARGS (extra
#   arguments of peer_gpu.py, e.g. "--no-im2col --no-check"), CONVGRAPH_BENCH_NO_PEER=1 (skip the
#   peer; an existing peer file is still compared), CONVGRAPH_GPU_PYTHON (default python3)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -n "${CONVGRAPH_SUITE:-}" ]]; then
  suite=$CONVGRAPH_SUITE
elif [[ -f "$root/../shared/bench/suite.json" ]]; then
  suite=$root/../shared/bench/suite.json
else
  suite=$root/.bench/suite.json
fi
build_dir=${CONVGRAPH_BENCH_BUILD:-$root/build}
threads=${CONVGRAPH_BENCH_THREADS:-2}
python=/usr/bin/python3

say() { echo "bench: $*"; }
die() {
  echo "bench: $*" >&2
  exit 2
}
usage() {
  sed -n '5,36p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

need_suite() {
  [[ -f "$suite" ]] || die "no suite at $suite (set CONVGRAPH_SUITE, or copy the kit to .bench/)"
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

# ---- GPU (see docs/benchmarks.md, "The GPU benchmark") ---------------------------------------

gpu_python=${CONVGRAPH_GPU_PYTHON:-python3}

# The value of --only in the benchmark's arguments ("" when absent).
only_arg() {
  local only="" prev=""
  for a in "$@"; do
    if [[ "$prev" == --only ]]; then only=$a; fi
    if [[ "$a" == --only=* ]]; then only=${a#--only=}; fi
    prev=$a
  done
  echo "$only"
}

# convgraph_bench_conv's --only takes substrings of layer names, peer_gpu.py's exact names: the
# suite's names that contain one of the substrings, comma-separated.
peer_only() {
  "$gpu_python" - "$suite" "$1" <<'PY'
import json, sys
suite, subs = json.load(open(sys.argv[1])), [s for s in sys.argv[2].split(",") if s]
names = [L["name"] for k in ("layers", "layers3d") for L in suite.get(k, [])]
print(",".join(n for n in names if any(s in n for s in subs)))
PY
}

# Merges per-precision files of convgraph_bench_conv --device cuda (peer_gpu.py's "layers"
# schema) into one: OUT IN...
merge_gpu() {
  "$gpu_python" - "$@" <<'PY'
import json, os, sys
out, ins = sys.argv[1], [p for p in sys.argv[2:] if os.path.exists(p)]
doc, by_name = None, {}
for path in ins:
    try:
        d = json.load(open(path))
    except Exception as e:
        print(f"bench: {path}: unreadable ({e}); left out", file=sys.stderr)
        continue
    if doc is None:
        doc = d
        doc["elapsed_s"] = d.get("elapsed_s", 0)
        by_name = {L["name"]: L for L in doc["layers"]}
        continue
    doc["meta"].setdefault("precisions", {}).update(d["meta"].get("precisions", {}))
    doc["elapsed_s"] += d.get("elapsed_s", 0)
    doc["skipped"] = sorted(set(doc.get("skipped", [])) | set(d.get("skipped", [])))
    for L in d["layers"]:
        if L["name"] in by_name:
            by_name[L["name"]]["results"].update(L["results"])
            by_name[L["name"]]["impls"].update(L["impls"])
        else:
            doc["layers"].append(L)
            by_name[L["name"]] = L
if doc is None:
    sys.exit("bench: no convgraph GPU results to merge")
tmp = out + ".tmp"
with open(tmp, "w") as f:
    json.dump(doc, f, indent=1)
os.replace(tmp, out)
PY
}

# compare.py for every precision in OURS: the best implementation per row, then each
# implementation alone (OURS is split into peer_cpu.py-schema files for compare.py --impl).
compare_gpu() {
  local ours=$1 peer=$2 tmp
  need_suite
  tmp=$(mktemp -d)
  "$gpu_python" - "$ours" "$tmp" <<'PY' || { rm -rf "$tmp"; return 1; }
import json, sys
d = json.load(open(sys.argv[1]))
precs, impls = [], []
for L in d["layers"]:
    for p, per in L.get("impls", {}).items():
        if p not in precs:
            precs.append(p)
        for i in per:
            if i not in impls:
                impls.append(i)
for p in precs:
    res = [{"name": L["name"], "dirs": {k: v for k, v in L["results"].get(p, {}).items() if isinstance(v, dict)},
            "impls": L.get("impls", {}).get(p, {})} for L in d["layers"]]
    json.dump({"results": res}, open(f"{sys.argv[2]}/{p}.json", "w"))
open(f"{sys.argv[2]}/list", "w").write(" ".join(precs) + "\n" + " ".join(impls) + "\n")
PY
  local precs impls status=0
  { read -r precs; read -r impls; } <"$tmp/list"
  for p in $precs; do
    echo "== $p: best implementation per row (peer = PyTorch $p) =="
    "$gpu_python" "$bench_dir/compare.py" "$tmp/$p.json" "$peer" --precision "$p" || status=1
    for i in $impls; do
      echo "== $p: $i =="
      "$gpu_python" "$bench_dir/compare.py" "$tmp/$p.json" "$peer" --precision "$p" --impl "$i" ||
        true # an implementation with no row in common is not a failure of the comparison
    done
    echo
  done
  rm -rf "$tmp"
  return "$status"
}

run_gpu() {
  local target=$1
  shift
  need_suite
  local ours peer cmp
  if [[ "$target" == *.json ]]; then
    ours=$target
    peer=${target%.json}.peer.json
    cmp=${target%.json}.compare.txt
  else
    mkdir -p "$target"
    ours=$target/ours_gpu.json
    peer=$target/peer_gpu.json
    cmp=$target/compare_gpu.txt
  fi
  mkdir -p "$(dirname "$ours")"
  build_dir=${CONVGRAPH_BENCH_BUILD:-$root/build-gpu}
  if [[ "${CONVGRAPH_BENCH_NO_BUILD:-0}" != 1 ]]; then
    CONVGRAPH_CMAKE_ARGS="-DCONVGRAPH_WITH_CUDA=ON -DCONVGRAPH_WITH_CUDNN=ON ${CONVGRAPH_CMAKE_ARGS:-}" \
      bash "$root/tools/build.sh" "$build_dir"
  fi
  local exe="$build_dir/tools/convgraph_bench_conv"
  [[ -x "$exe" ]] || die "$exe was not built (CONVGRAPH_BUILD_TOOLS=OFF?)"
  local status=0 p part files=()
  read -r -a precs <<<"${CONVGRAPH_GPU_PRECISIONS:-fp32 tf32 fp16}"
  # One process per precision: a device fault in one leaves the others' results intact. Each
  # writes its part next to OURS after every layer (what a run cut short leaves), merged at the end.
  for p in "${precs[@]}"; do
    part=${ours%.json}.$p.part.json
    rm -f "$part"
    say "convgraph on the GPU, $p ($(date +%T))"
    if "$exe" --suite "$suite" --device cuda --precision "$p" --out "$part" "$@"; then
      :
    else
      local rc=$?
      say "convgraph $p: exit status $rc"
      status=1
    fi
    files+=("$part")
  done
  if merge_gpu "$ours" "${files[@]}"; then
    say "wrote $ours"
    rm -f "${files[@]}"
  else
    status=1
  fi
  if [[ "${CONVGRAPH_BENCH_NO_PEER:-0}" != 1 ]]; then
    local peer_args=() only
    only=$(only_arg "$@")
    if [[ -n "$only" ]]; then
      only=$(peer_only "$only")
      peer_args+=(--only "${only:-none}")
    fi
    read -r -a extra <<<"${CONVGRAPH_PEER_ARGS:-}"
    say "PyTorch peer ($(date +%T)): $gpu_python peer_gpu.py ${peer_args[*]} ${extra[*]}"
    "$gpu_python" "$bench_dir/peer_gpu.py" --suite "$suite" --out "$peer" "${peer_args[@]}" \
      "${extra[@]}" || {
      say "peer_gpu.py failed"
      status=1
    }
  fi
  if [[ -f "$ours" && -f "$peer" ]]; then
    if compare_gpu "$ours" "$peer" >"$cmp" 2>&1; then
      say "wrote $cmp; geometric means:"
    else
      say "compare failed (see $cmp)"
      status=1
    fi
    grep -E '^== |^geomean|^no \(layer' "$cmp" | paste - - |
      sed -E 's/^== (.*) ==\t/  \1: /' || true
  else
    say "no comparison: $( [[ -f "$ours" ]] || echo "no $ours ")$( [[ -f "$peer" ]] || echo "no $peer")"
    status=1
  fi
  return "$status"
}

# convgraph_bench_net and its peer (the shared bench's peer_net.py for resnet50_conv,
# tools/peer_net_mobilenet.py for mobilenet_conv) interleaved, each run a fresh process; prints each
# pair's step-time and peak-memory ratios (peer / convgraph) and their geometric means.
run_net_sitting() {
  local dir=$1 pairs=4
  shift
  if (($# >= 1)) && [[ "$1" =~ ^[0-9]+$ ]]; then
    pairs=$1
    shift
  fi
  ((pairs >= 1)) || die "net-sitting: at least one pair"
  local net=resnet50_conv batch=8 steps=5 warmup=2 args=("$@") i
  for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[$i]}" in
      --net) net=${args[$((i + 1))]} ;;
      --batch) batch=${args[$((i + 1))]} ;;
      --steps) steps=${args[$((i + 1))]} ;;
      --warmup) warmup=${args[$((i + 1))]} ;;
    esac
  done
  local peer peer_args=(--batch "$batch" --threads "$threads" --steps "$steps" --warmup "$warmup")
  if [[ "$net" == resnet50_conv ]]; then
    need_suite
    peer=$bench_dir/peer_net.py
    peer_args+=(--device cpu)
  else
    peer=$root/tools/peer_net_mobilenet.py
  fi
  [[ -f "$peer" ]] || die "no peer at $peer"
  peer_setup
  build
  local exe="$build_dir/tools/convgraph_bench_net"
  [[ -x "$exe" ]] || die "$exe was not built (CONVGRAPH_BUILD_TOOLS=OFF?)"
  mkdir -p "$dir"
  say "net sitting: $net, N=$batch, $threads threads, $pairs pairs; load $(load)"
  for ((i = 1; i <= pairs; i++)); do
    "$exe" --threads "$threads" --out "$dir/ours_$i.json" "$@" >"$dir/ours_$i.log" 2>&1 ||
      die "convgraph_bench_net failed: see $dir/ours_$i.log"
    "$python" "$peer" "${peer_args[@]}" --out "$dir/peer_$i.json" >"$dir/peer_$i.log" 2>&1 ||
      die "the peer failed: see $dir/peer_$i.log"
    say "pair $i done, load $(load)"
  done
  "$python" - "$dir" "$pairs" "$(git -C "$root" rev-parse --short HEAD 2>/dev/null ||
    echo unknown)" "$(date -u '+%Y-%m-%d %H:%M UTC')" <<'PY' | tee "$dir/ratios.txt"
import json, math, sys
d, pairs = sys.argv[1], int(sys.argv[2])
cpu = json.load(open(f"{d}/ours_1.json")).get("cpu", "?")
print(f"# {sys.argv[4]}, code {sys.argv[3]}, CPU: {cpu}")
rows = []
for i in range(1, pairs + 1):
    ours = json.load(open(f"{d}/ours_{i}.json"))
    peer = json.load(open(f"{d}/peer_{i}.json"))
    mem = (peer["peak_mem_bytes"] / ours["peak_mem_bytes"]
           if ours.get("peak_mem_bytes") and peer.get("peak_mem_bytes") else float("nan"))
    rows.append((ours["step_ms_median"], peer["step_ms_median"], ours.get("peak_mem_bytes"),
                 peer.get("peak_mem_bytes"), mem))
    print(f"pair {i}: convgraph {rows[-1][0]:8.1f} ms  peer {rows[-1][1]:8.1f} ms  "
          f"speed ratio (peer/convgraph) {rows[-1][1] / rows[-1][0]:.3f}  "
          f"memory ratio (convgraph/peer) {1 / mem if mem == mem else float('nan'):.3f}")
geo = lambda v: math.exp(sum(math.log(x) for x in v) / len(v))
print(f"geometric mean: speed {geo([p / o for o, p, *_ in rows]):.3f} (peer / convgraph; "
      f"above 1: convgraph faster)")
mems = [1 / r[4] for r in rows if r[4] == r[4]]
if mems:
    print(f"geometric mean: peak memory {geo(mems):.3f} (convgraph / peer; below 1: convgraph smaller)")
PY
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
  graph-scale)
    build
    exe="$build_dir/tools/convgraph_bench_graph_scale"
    [[ -x "$exe" ]] || die "$exe was not built (CONVGRAPH_BUILD_TOOLS=OFF?)"
    out=""
    if (($# >= 1)) && [[ "$1" == *.json ]]; then
      out=$1
      shift
    fi
    say "load $(load)"
    "$exe" ${out:+--out "$out"} "$@"
    if "$python" -c 'import torch' >/dev/null 2>&1; then
      say "PyTorch's per-op overhead, load $(load)"
      "$python" "$root/tools/peer_op_overhead.py" ${out:+--out "${out%.json}.peer.json"}
    else
      say "no PyTorch for $python: the peer is skipped (apt-get install python3-torch)"
    fi
    ;;
  net)
    build
    exe="$build_dir/tools/convgraph_bench_net"
    [[ -x "$exe" ]] || die "$exe was not built (CONVGRAPH_BUILD_TOOLS=OFF?)"
    out=""
    if (($# >= 1)) && [[ "$1" == *.json ]]; then
      out=$1
      shift
    fi
    say "load $(load)"
    "$exe" --threads "$threads" ${out:+--out "$out"} "$@"
    ;;
  net-sitting)
    (($# >= 1)) || usage
    run_net_sitting "$@"
    ;;
  gpu)
    (($# >= 1)) || usage
    run_gpu "$@"
    ;;
  compare-gpu)
    (($# == 2)) || usage
    compare_gpu "$1" "$2"
    ;;
  *) usage ;;
esac
