#!/usr/bin/env bash
# The whole GPU check, one command on the GPU machine (docs/benchmarks.md, "gpu-check.sh"):
# build the CUDA configuration, print the machine's versions, run the cuda-labelled tests, run
# compute-sanitizer memcheck over the GPU test programs, then the GPU benchmark beside PyTorch.
# Everything it writes goes into OUTDIR, compact (the GPU machine returns at most 8 files):
#   summary.txt       one line per stage: PASS / FAIL / SKIP, seconds, a note
#   gpu-check.log     what this script printed (summaries only; the full logs are below)
#   ctest_cuda.log    ctest -L cuda --output-on-failure (gzipped when over 1 MiB)
#   ctest_cpu.log     with --cpu-tests
#   memcheck.log      compute-sanitizer's output per test program (gzipped when over 1 MiB)
#   ours_gpu.json, peer_gpu.json, compare_gpu.txt   the benchmark (tools/bench.sh gpu)
#   build.log.gz      only when the build failed
#
# Usage: bash tools/gpu-check.sh OUTDIR [OPTIONS]
#   --no-build            use the build folder as it is (default: configure and build, all cores)
#   --no-tests            skip ctest -L cuda
#   --cpu-tests           also run the CPU tests (ctest -LE 'cuda|slow')
#   --no-memcheck         skip compute-sanitizer
#   --no-bench            skip the benchmark
#   --only-bench          build (incremental), versions and the benchmark only
#   --bench-args "ARGS"   arguments of convgraph_bench_conv, e.g. "--only res2,depthwise"
#   --ctest-jobs N        parallel cuda tests (default 4)
#   --test-timeout S      limit per test in ctest (default 300)
#   --memcheck-timeout S  limit per test program under compute-sanitizer (default 300)
#   --memcheck-filter F   Catch2 test spec under compute-sanitizer (default "[cuda]")
#   --memcheck-programs "P ..."  test programs to check (default: every one with [cuda] tests)
# Exit status: 0 when every stage that ran passed, 1 otherwise, 2 for a usage error.
#
# Environment: CONVGRAPH_SUITE (default ../shared/bench/suite.json, else .bench/suite.json; the
# kit -- suite.json, peer_gpu.py, compare.py -- must be copied there before the run),
# CONVGRAPH_GPU_BUILD (build folder, default build-gpu), CONVGRAPH_CMAKE_ARGS (more CMake
# options), and tools/bench.sh's CONVGRAPH_GPU_PRECISIONS, CONVGRAPH_PEER_ARGS, ...
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
  sed -n '14,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

(($# >= 1)) || usage
[[ "$1" != -* ]] || usage
out=$1
shift
do_build=1 do_tests=1 do_cpu_tests=0 do_memcheck=1 do_bench=1
bench_args="" ctest_jobs=4 test_timeout=300 memcheck_timeout=300 memcheck_filter="[cuda]"
memcheck_programs=""
while (($# > 0)); do
  case "$1" in
    --no-build) do_build=0 ;;
    --no-tests) do_tests=0 ;;
    --cpu-tests) do_cpu_tests=1 ;;
    --no-memcheck) do_memcheck=0 ;;
    --no-bench) do_bench=0 ;;
    --only-bench) do_tests=0 do_cpu_tests=0 do_memcheck=0 do_bench=1 ;;
    --bench-args)
      (($# >= 2)) || usage
      bench_args=$2
      shift
      ;;
    --bench-args=*) bench_args=${1#*=} ;;
    --ctest-jobs)
      (($# >= 2)) || usage
      ctest_jobs=$2
      shift
      ;;
    --test-timeout)
      (($# >= 2)) || usage
      test_timeout=$2
      shift
      ;;
    --memcheck-timeout)
      (($# >= 2)) || usage
      memcheck_timeout=$2
      shift
      ;;
    --memcheck-filter)
      (($# >= 2)) || usage
      memcheck_filter=$2
      shift
      ;;
    --memcheck-programs)
      (($# >= 2)) || usage
      memcheck_programs=$2
      shift
      ;;
    -h | --help) usage ;;
    *)
      echo "gpu-check: unknown option $1" >&2
      usage
      ;;
  esac
  shift
done

mkdir -p "$out"
out=$(cd "$out" && pwd)
build=${CONVGRAPH_GPU_BUILD:-$root/build-gpu}
[[ "$build" == /* ]] || build=$root/$build
log=$out/gpu-check.log
summary=$out/summary.txt
work=$(mktemp -d)
: >"$log"
: >"$summary"
exec > >(tee -a "$log") 2>&1
tee_pid=$!
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  rm -rf "$work"
}
trap cleanup EXIT

t_all=$SECONDS
failed=0
stage_t0=0
say() { echo "gpu-check: $*"; }
begin() {
  stage_t0=$SECONDS
  echo
  echo "===== $1 ($(date +%T))"
}
# record STAGE PASS|FAIL|SKIP NOTE
record() {
  local secs=$((SECONDS - stage_t0))
  [[ "$2" == SKIP ]] && secs=0
  printf '%-11s %-4s %5ss  %s\n' "$1" "$2" "$secs" "$3" >>"$summary"
  [[ "$2" != FAIL ]] || failed=1
  say "$1: $2 ${3:+($3)}"
}
# Gzips FILE when it is over 1 MiB (the machine returns few, small files).
shrink() {
  if [[ -f "$1" ]] && (($(stat -c %s "$1") > 1048576)); then
    gzip -f -9 "$1"
    say "$(basename "$1") gzipped ($(stat -c %s "$1.gz") bytes)"
  fi
}
# The one-line result of a ctest log, plus the failed tests (at most 30).
ctest_summary() {
  grep -E '% tests passed|Total Test time' "$1" || true
  if grep -q 'The following tests FAILED' "$1"; then
    sed -n '/The following tests FAILED/,$p' "$1" | grep -E '^\s+[0-9]+ - ' | head -30
  fi
}
find_tool() {
  command -v "$1" 2>/dev/null || { [[ -x "/usr/local/cuda/bin/$1" ]] && echo "/usr/local/cuda/bin/$1"; }
}

say "OUTDIR $out, build $build, $(nproc) cores, started $(date -Is)"

# ---- suite -------------------------------------------------------------------------------------
if [[ -n "${CONVGRAPH_SUITE:-}" ]]; then
  suite=$CONVGRAPH_SUITE
elif [[ -f "$root/../shared/bench/suite.json" ]]; then
  suite=$root/../shared/bench/suite.json
else
  suite=$root/.bench/suite.json
fi
if [[ -f "$suite" ]]; then
  suite=$(cd "$(dirname "$suite")" && pwd)/$(basename "$suite")
  export CONVGRAPH_SUITE=$suite
  say "suite $suite"
elif ((do_bench)); then
  say "no suite at $suite: copy the benchmark kit (suite.json, peer_gpu.py, compare.py) to" \
    ".bench/ or set CONVGRAPH_SUITE"
fi

# ---- versions ----------------------------------------------------------------------------------
begin "machine and versions"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi -L
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit \
    --format=csv,noheader || true
else
  echo "nvidia-smi: not found"
fi
nvcc=$(find_tool nvcc)
[[ -n "$nvcc" ]] && echo "nvcc: $("$nvcc" --version | grep -E '^Cuda|release' | tail -1)"
for h in /usr/include/x86_64-linux-gnu/cudnn_version*.h /usr/include/cudnn_version.h \
  /usr/local/cuda/include/cudnn_version.h; do
  if [[ -f "$h" ]]; then
    echo "cuDNN header $h: $(grep -E '#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) ' "$h" |
      awk '{print $3}' | paste -sd.)"
    break
  fi
done
echo "cmake: $(cmake --version | head -1)"
echo "c++: $(c++ --version | head -1)"
sanitizer=$(find_tool compute-sanitizer)
[[ -n "$sanitizer" ]] && echo "compute-sanitizer: $("$sanitizer" --version | tail -1)"
echo "python3: $(python3 -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__,
  "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' 2>&1 | tail -1)"
echo "source: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "no git") " \
  "($(git -C "$root" status --short 2>/dev/null | wc -l) changed files)"
echo "memory: $(free -g | awk '/^Mem/ {print $2 " GiB, " $7 " GiB available"}')"

# ---- build -------------------------------------------------------------------------------------
built=0
begin "build ($build, Release, CUDA and cuDNN on, warnings as errors, $(nproc) jobs)"
if ((do_build)); then
  if CONVGRAPH_CMAKE_ARGS="-DCONVGRAPH_WITH_CUDA=ON -DCONVGRAPH_WITH_CUDNN=ON ${CONVGRAPH_CMAKE_ARGS:-}" \
    bash "$root/tools/build.sh" "$build" >"$work/build.log" 2>&1; then
    grep -E '^-- convgraph:' "$work/build.log" || true
    tail -1 "$work/build.log"
    built=1
    record build PASS "$(grep -cE '^\[[0-9]+/[0-9]+\]' "$work/build.log") steps"
  else
    grep -E 'error|Error|FAILED' "$work/build.log" | head -40
    tail -15 "$work/build.log"
    gzip -9 -c "$work/build.log" >"$out/build.log.gz"
    record build FAIL "see build.log.gz"
  fi
else
  if [[ -d "$build" ]]; then built=1; fi
  record build SKIP "--no-build"
fi

# ---- cuda tests --------------------------------------------------------------------------------
if ((do_tests)); then
  begin "ctest -L cuda (-j $ctest_jobs, --timeout $test_timeout)"
  if ((!built)); then
    record ctest_cuda SKIP "no build"
  else
    ctest --test-dir "$build" -L cuda --output-on-failure --no-tests=error -j "$ctest_jobs" \
      --timeout "$test_timeout" >"$out/ctest_cuda.log" 2>&1
    rc=$?
    ctest_summary "$out/ctest_cuda.log"
    grep -q '% tests passed' "$out/ctest_cuda.log" || tail -5 "$out/ctest_cuda.log"
    total=$(grep -cE 'Test +#[0-9]+:' "$out/ctest_cuda.log")
    skipped=$(grep -cE 'Test +#[0-9]+:.*Skipped' "$out/ctest_cuda.log")
    note="$(grep -E '% tests passed' "$out/ctest_cuda.log" | head -1)"
    ((skipped == 0)) || note="$note; $skipped skipped"
    if ((rc != 0)); then
      record ctest_cuda FAIL "${note:-ctest exit status $rc}"
    elif ((total > 0 && skipped == total)); then
      record ctest_cuda FAIL "every cuda test skipped: no usable GPU?"
    else
      record ctest_cuda PASS "$note"
    fi
    shrink "$out/ctest_cuda.log"
  fi
else
  record ctest_cuda SKIP ""
fi

# ---- cpu tests (optional) ----------------------------------------------------------------------
if ((do_cpu_tests)); then
  begin "ctest -LE 'cuda|slow' (-j $(nproc))"
  if ((!built)); then
    record ctest_cpu SKIP "no build"
  else
    ctest --test-dir "$build" -LE '^(cuda|slow)$' --output-on-failure --no-tests=error \
      -j "$(nproc)" --timeout 600 >"$out/ctest_cpu.log" 2>&1
    rc=$?
    ctest_summary "$out/ctest_cpu.log"
    note="$(grep -E '% tests passed' "$out/ctest_cpu.log" | head -1)"
    if ((rc == 0)); then record ctest_cpu PASS "$note"; else record ctest_cpu FAIL "$note"; fi
    shrink "$out/ctest_cpu.log"
  fi
fi

# ---- compute-sanitizer memcheck ----------------------------------------------------------------
if ((do_memcheck)); then
  begin "compute-sanitizer memcheck, test spec $memcheck_filter"
  if ((!built)); then
    record memcheck SKIP "no build"
  elif [[ -z "$sanitizer" ]]; then
    record memcheck FAIL "compute-sanitizer not found"
  else
    # The test programs with [cuda] test cases: one per folder of tests/ (tests/CMakeLists.txt).
    programs=()
    if [[ -n "$memcheck_programs" ]]; then
      read -r -a programs <<<"$memcheck_programs"
    else
      while IFS= read -r folder; do
        programs+=("test_${folder//\//_}")
      done < <(cd "$root/tests" && grep -l '\[cuda\]' -- */*.cpp */*/*.cpp 2>/dev/null |
        xargs -r -n1 dirname | sort -u)
    fi
    : >"$out/memcheck.log"
    n_ok=0 n_bad=0 n_skip=0 bad=()
    for p in "${programs[@]}"; do
      exe=$build/tests/$p
      if [[ ! -x "$exe" ]]; then
        say "$p: not built, skipped"
        continue
      fi
      t0=$SECONDS
      timeout --signal=INT --kill-after=30 "$memcheck_timeout" \
        "$sanitizer" --tool memcheck --error-exitcode 1 "$exe" "$memcheck_filter" \
        >"$work/memcheck_$p.log" 2>&1
      rc=$?
      {
        echo "===== $p (exit status $rc, $((SECONDS - t0)) s)"
        cat "$work/memcheck_$p.log"
      } >>"$out/memcheck.log"
      sum=$(grep -E 'ERROR SUMMARY|All tests passed|test cases:' "$work/memcheck_$p.log" |
        tr -s ' ' | paste -sd';')
      case $rc in
        0) n_ok=$((n_ok + 1)) ;;
        77)
          n_skip=$((n_skip + 1))
          sum="skipped (no usable GPU?) $sum"
          ;;
        124 | 137)
          n_bad=$((n_bad + 1)) bad+=("$p: timeout")
          sum="TIMEOUT after ${memcheck_timeout}s (cut short, not an error found: raise \
--memcheck-timeout or narrow --memcheck-filter) $sum"
          ;;
        *) n_bad=$((n_bad + 1)) bad+=("$p") ;;
      esac
      echo "  $p: exit status $rc, $((SECONDS - t0)) s: ${sum:-no summary line}"
    done
    note="$n_ok clean, $n_bad failed${bad[*]:+ (${bad[*]})}, $n_skip skipped"
    if ((${#programs[@]} == 0)); then
      record memcheck FAIL "no test program with [cuda] test cases found"
    elif ((n_bad > 0 || n_ok == 0)); then
      record memcheck FAIL "$note"
    else
      record memcheck PASS "$note"
    fi
    shrink "$out/memcheck.log"
  fi
else
  record memcheck SKIP ""
fi

# ---- benchmark ---------------------------------------------------------------------------------
if ((do_bench)); then
  begin "benchmark: tools/bench.sh gpu $out $bench_args"
  if ((!built)); then
    record bench SKIP "no build"
  elif [[ ! -f "$suite" ]]; then
    record bench FAIL "no suite (copy the kit to .bench/ or set CONVGRAPH_SUITE)"
  else
    read -r -a bargs <<<"$bench_args"
    CONVGRAPH_BENCH_NO_BUILD=1 CONVGRAPH_BENCH_BUILD=$build \
      bash "$root/tools/bench.sh" gpu "$out" "${bargs[@]}"
    rc=$?
    ran=$(python3 - "$out/ours_gpu.json" 2>/dev/null <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ok = bad = 0
for L in d["layers"]:
    for per in L.get("impls", {}).values():
        for dirs in per.values():
            for e in dirs.values():
                ok += "ms" in e
                bad += "error" in e
print(f"{ok} measurements ran, {bad} failed")
PY
    )
    # compare_gpu.txt: "== fp32: best implementation per row ..." then its "geomean speedup X".
    geo=$(awk '/^== .*: best implementation/ {p = $2; want = 1; next}
      want && /^geomean speedup/ {printf "%s %s ", p, $3; want = 0}
      want && /^no \(layer/ {printf "%s - ", p; want = 0}' "$out/compare_gpu.txt" 2>/dev/null)
    note="${ran:-no results}${geo:+; geomean speedup of the best: ${geo% }}"
    if ((rc == 0)); then record bench PASS "$note"; else record bench FAIL "$note"; fi
  fi
else
  record bench SKIP ""
fi

echo
echo "===== summary ($((SECONDS - t_all)) s; $out/summary.txt)"
if ((failed)); then overall=FAIL; else overall=PASS; fi
printf '%-11s %-4s %5ss\n' overall "$overall" "$((SECONDS - t_all))" >>"$summary"
cat "$summary"
find "$out" -maxdepth 1 -type f -printf '  %f  %s bytes\n' | sort
exec >&- 2>&-
wait "$tee_pid" 2>/dev/null
exit "$failed"
