#!/usr/bin/env bash
# bench/cpu_vs_sgemm.sh - dense f32 CPU attention (H=8, S=4096, D=128) against
# an OpenBLAS sgemm doing the same products (Q K^T and P V per head), and
# sparse attention at density 0.1 against dense, all in one run.
#
# usage: bench/cpu_vs_sgemm.sh [BUILD_DIR]     (default: build)
# OpenBLAS picks its kernels by CPU model; on CPUs it does not know it falls
# back to old SSE kernels.  The sgemm is measured twice: as OpenBLAS detects
# the CPU, and with OPENBLAS_CORETYPE=SkylakeX when the CPU has AVX-512
# (Haswell for AVX2), so the comparison is against the best BLAS kernel too.
set -euo pipefail
B="${1:-build}"
H=8 S=4096 D=128
best=""
if grep -q -m1 -w avx512f /proc/cpuinfo; then best=SkylakeX
elif grep -q -m1 -w avx2 /proc/cpuinfo; then best=Haswell; fi
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
env -u OPENBLAS_CORETYPE "$B/bench/sgemm_rate" --heads $H --seq $S --head-dim $D --reps 3
[ -n "$best" ] && OPENBLAS_CORETYPE=$best "$B/bench/sgemm_rate" --heads $H --seq $S --head-dim $D --reps 3
# Three runs per layout: this machine's timings move by 10-20% from run to
# run, so compare the best of them.
for lay in nhd hnd; do
  for _ in 1 2 3; do
    "$B/tools/bsa" --no-log bench --device cpu --seq $S --heads $H --head-dim $D \
      --density 0.05,0.1,0.25,0.5 --reps 5 --qkv-layout $lay --json
  done
done
