#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages that convgraph's build, tests and examples need.
# Idempotent and silent when nothing is missing; apt's output goes to a log that is shown only when
# something fails. Usage: bash tools/setup.sh
#
# A package counts as present when dpkg has it installed or, for tools, when the command is on
# PATH (a newer CMake in /usr/local is fine). Without apt-get, or where the package mirrors cannot
# be reached (the offline GPU machine), it says what is missing and goes on; under CI=true a
# failure to install is an error.
set -euo pipefail

# One package per line. LLVM (the fused-kernel code generator's back end) is installed; the other
# optional components (CUDA, cuDNN) are not: the build finds them when present and leaves them out
# otherwise. GCC's libgomp (with g++) provides OpenMP.
PACKAGES=(
  build-essential        # g++, make, libc headers
  cmake
  ninja-build
  pkg-config
  libopenblas-openmp-dev # BLAS (cblas.h, libopenblas)
  libfmt-dev
  nlohmann-json3-dev
  libcli11-dev           # the convgraph command-line tool
  libdnnl-dev            # oneDNN convolutions on the CPU
  ocl-icd-opencl-dev     # Debian's oneDNN package file requires OpenCL (a recommends of libdnnl-dev)
  llvm-dev               # the code generator's JIT back end (written for LLVM 14, Debian 12's)
  catch2                 # the test suite (Catch2 2 on Debian 12)
  clang-format           # tools/format.sh --check
)

say() { echo "setup: $*"; }

installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]; }

# Whether what PACKAGE provides is already there, from this package or another source.
present() {
  case "$1" in
    build-essential) command -v g++ >/dev/null && command -v make >/dev/null && return 0 ;;
    cmake) command -v cmake >/dev/null && return 0 ;;
    ninja-build) command -v ninja >/dev/null && return 0 ;;
    pkg-config) command -v pkg-config >/dev/null && return 0 ;;
    clang-format) command -v clang-format >/dev/null && return 0 ;;
    # llvm-dev is Debian's name for its default version's llvm-N-dev; the back end needs 14.
    llvm-dev) [[ -f /usr/lib/llvm-14/lib/cmake/llvm/LLVMConfig.cmake ]] && return 0 ;;
    # Any OpenBLAS flavour builds; a fresh system gets the OpenMP one.
    libopenblas-openmp-dev)
      installed libopenblas-pthread-dev || installed libopenblas-serial-dev && return 0 ;;
  esac
  command -v dpkg-query >/dev/null && installed "$1"
}

missing=()
for package in "${PACKAGES[@]}"; do
  present "$package" || missing+=("$package")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  say "apt-get not found; skipping package installation."
  say "not found here: ${missing[*]} (the build reports what it cannot do without)"
  exit 0
fi

as_root=()
if ((EUID != 0)); then
  if ! command -v sudo >/dev/null 2>&1; then
    say "missing packages: ${missing[*]}" >&2
    say "not running as root and sudo is not available; install them as root with:" >&2
    say "  apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  # Without a terminal sudo cannot ask for a password: fail at once instead of hanging.
  if [[ -t 0 ]]; then as_root=(sudo); else as_root=(sudo -n); fi
fi

log=$(mktemp "${TMPDIR:-/tmp}/convgraph-setup.XXXXXX.log")
fail() {
  say "$1 failed; apt output follows:" >&2
  cat "$log" >&2
  rm -f "$log"
  say "missing packages were: ${missing[*]}" >&2
  exit 1
}

# sudo drops the environment, so the variable goes on the command line. --error-on=any makes a
# mirror that cannot be reached an error instead of a warning.
apt_get=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
attempts=1
if [[ "${CI:-}" == true ]]; then attempts=3; fi # CI: mirrors can fail transiently
updated=0
for ((attempt = 1; attempt <= attempts; attempt++)); do
  if "${apt_get[@]}" update -qq --error-on=any >>"$log" 2>&1; then
    updated=1
    break
  fi
  if ((attempt < attempts)); then sleep $((attempt * 10)); fi
done
if ((!updated)); then
  if [[ "${CI:-}" == true ]]; then
    fail "apt-get update"
  fi
  say "the package mirrors cannot be reached; continuing without: ${missing[*]}"
  rm -f "$log"
  exit 0
fi
say "installing ${#missing[@]} package(s): ${missing[*]}"
"${apt_get[@]}" install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1 ||
  fail "apt-get install"
rm -f "$log"
say "done"
