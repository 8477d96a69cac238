#!/usr/bin/env bash
# Times the compilation of translation units one at a time (no ccache, nothing else compiling),
# the number that matters for a user's first build on a small machine (docs/benchmarks.md,
# "compile_times.sh"). Reads the build folder's compile_commands.json; prints a table, slowest
# first, and writes JSON.
#
# Usage: bash tools/compile_times.sh BUILD_DIR [--top N] [--match REGEX] [--out FILE.json]
#   --top N         only the N slowest units of the build folder's last build (.ninja_log);
#                   default: every unit
#   --match REGEX   only units whose source path matches REGEX (grep -E)
#   --out FILE      the JSON (default: BUILD_DIR/compile_times.json)
# Exit status: 0, or 2 for a usage error or a unit that failed to compile.
set -euo pipefail

usage() {
  sed -n '7,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

(($# >= 1)) || usage
[[ "$1" != -* ]] || usage
build=$1
shift
top=0 match="" out=""
while (($# > 0)); do
  case "$1" in
    --top)
      (($# >= 2)) || usage
      top=$2
      shift
      ;;
    --match)
      (($# >= 2)) || usage
      match=$2
      shift
      ;;
    --out)
      (($# >= 2)) || usage
      out=$2
      shift
      ;;
    *) usage ;;
  esac
  shift
done
[[ -f "$build/compile_commands.json" ]] || {
  echo "compile_times.sh: $build/compile_commands.json not found (configure the build first)" >&2
  exit 2
}
[[ "$top" =~ ^[0-9]+$ ]] || {
  echo "compile_times.sh: --top takes a count, not '$top'" >&2
  exit 2
}
out=${out:-$build/compile_times.json}

python3 - "$build" "$top" "$match" "$out" <<'PY'
import json, os, re, shlex, subprocess, sys, time, tempfile

build, top, match, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with open(os.path.join(build, "compile_commands.json")) as f:
    entries = json.load(f)

def object_of(entry):
    args = shlex.split(entry["command"]) if "command" in entry else entry["arguments"]
    return args[args.index("-o") + 1] if "-o" in args else None

if top > 0:
    # The slowest outputs of the last build, by .ninja_log's start and end times.
    durations = {}
    log = os.path.join(build, ".ninja_log")
    if not os.path.exists(log):
        sys.exit("compile_times.sh: --top needs the build folder's .ninja_log")
    with open(log) as f:
        for line in f:
            if line.startswith("#"):
                continue
            start, end, _, target, _ = line.rstrip("\n").split("\t")
            durations[target] = int(end) - int(start)
    ranked = sorted(entries, key=lambda e: -durations.get(object_of(e) or "", 0))
    entries = ranked[:top]
if match:
    entries = [e for e in entries if re.search(match, e["file"])]

sources = [e["file"] for e in entries]
rows = []
with tempfile.TemporaryDirectory() as scratch:
    for entry in entries:
        args = shlex.split(entry["command"]) if "command" in entry else list(entry["arguments"])
        if os.path.basename(args[0]) == "ccache":
            args = args[1:]
        if "-o" in args:
            args[args.index("-o") + 1] = os.path.join(scratch, "unit.o")
        start = time.monotonic()
        result = subprocess.run(args, cwd=entry["directory"], capture_output=True, text=True)
        seconds = time.monotonic() - start
        if result.returncode != 0:
            sys.stderr.write(result.stderr[-4000:])
            sys.exit(f"compile_times.sh: {entry['file']} failed to compile")
        source = os.path.relpath(entry["file"], os.path.dirname(os.path.abspath(build)))
        if sources.count(entry["file"]) > 1:  # one source compiled several ways: name the way
            way = re.search(r"([^/]+)\.dir/", object_of(entry) or "")
            source += f" [{way.group(1) if way else object_of(entry)}]"
        rows.append({"source": source, "seconds": round(seconds, 1)})
        print(f"{seconds:8.1f} s  {source}", flush=True)

rows.sort(key=lambda r: -r["seconds"])
print("\nslowest first:")
for r in rows:
    print(f"{r['seconds']:8.1f} s  {r['source']}")
with open(out, "w") as f:
    json.dump({"units": rows, "nproc": os.cpu_count()}, f, indent=1)
print(f"\nwrote {out}")
PY
