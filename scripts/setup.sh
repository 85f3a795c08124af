#!/usr/bin/env bash
# scripts/setup.sh - installs what bsa needs (Debian packages), then builds it
# in build/.  Idempotent: installed packages, an existing configure and an
# up-to-date build are skipped.  Sourced by demo.sh and test.sh.
set -euo pipefail

BSA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BSA_BUILD="${BSA_BUILD:-$BSA_ROOT/build}"

BSA_PACKAGES=(
  build-essential autoconf automake pkg-config
  libopenblas-dev libhdf5-dev hdf5-tools libpng-dev libcairo2-dev fonts-dejavu-core
  libsqlite3-dev sqlite3 libjansson-dev libssl-dev check libsubunit-dev
  python3 python3-h5py python3-numpy
)

bsa_install_packages() {
  local missing=()
  for p in "${BSA_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

bsa_build() {
  cd "$BSA_ROOT"
  [ -x configure ] || ./autogen.sh >/dev/null
  mkdir -p "$BSA_BUILD"
  cd "$BSA_BUILD"
  if [ ! -f Makefile ]; then
    # CUDA is built when nvcc is found (on PATH or in /usr/local/cuda).
    "$BSA_ROOT/configure" ${BSA_CONFIGURE_FLAGS:-} >configure.log 2>&1 ||
      { cat configure.log; exit 1; }
    grep -A4 "CUDA backend" configure.log || true
  fi
  make -j"$(nproc)" >make.log 2>&1 || { tail -50 make.log; exit 1; }
  make -j"$(nproc)" tools/bsa bench/sgemm_rate >/dev/null
}

bsa_install_packages
bsa_build
BSA="$BSA_BUILD/tools/bsa"
export BSA BSA_ROOT BSA_BUILD
