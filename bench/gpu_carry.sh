#!/bin/sh
# bench/gpu_carry.sh - gathers what bench/gpu_bench.sh needs on the GPU
# machine into one folder: check_gpu, attn_dev and bsa from a CUDA build,
# and the shared libraries of bsa that the GPU machine lacks (Cairo,
# jansson, OpenBLAS, ... about 65 MB), packed as lib.tar.xz (about 14 MB)
# because they travel compressed.  gpu_bench.sh unpacks them and points
# LD_LIBRARY_PATH there.
#
#   bench/gpu_carry.sh BUILD_DIR DEST_DIR
#
# BUILD_DIR: configured with --with-cuda and built (make tests/gpu/check_gpu
# bench/attn_dev tools/bsa).  libc, libm, libstdc++, libgcc_s and libresolv
# are left out: the GPU machine's own serve.
set -eu
B=${1:?usage: gpu_carry.sh BUILD_DIR DEST_DIR}
DEST=${2:?usage: gpu_carry.sh BUILD_DIR DEST_DIR}
mkdir -p "$DEST"
for f in tests/gpu/check_gpu bench/attn_dev tools/bsa; do
  [ -x "$B/$f" ] || { echo "gpu_carry: $B/$f is missing: build it first" >&2; exit 1; }
  cp "$B/$f" "$DEST/"
done
tmp=$(mktemp -d)
mkdir "$tmp/lib"
ldd "$B/tools/bsa" | awk '{print $3}' | grep '^/' |
  grep -v -E '/(libc|libm|libstdc\+\+|libgcc_s|libresolv)\.so' |
  while read -r so; do cp -L "$so" "$tmp/lib/"; done
tar cJf "$DEST/lib.tar.xz" -C "$tmp" lib
rm -rf "$tmp"
du -sh "$DEST"
