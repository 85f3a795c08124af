#!/usr/bin/env bash
# bench/cpu_vs_sgemm.sh - dense f32 CPU attention (H=8, S=4096, D=128) against
# an OpenBLAS sgemm doing the same products (Q K^T and P V per head), and
# sparse attention at density 0.1 against dense, all in one run.
#
# usage: [ROUNDS=N] bench/cpu_vs_sgemm.sh [BUILD_DIR]     (default: build, 3 rounds)
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
# ROUNDS runs per layout (default 3), the layouts alternating: timings on a
# shared virtual machine move by 10-40% from run to run, so the summary
# compares the best time of each row with the best dense time.
ROUNDS="${ROUNDS:-3}"
lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
for _ in $(seq "$ROUNDS"); do
  for lay in nhd hnd; do
    "$B/tools/bsa" --no-log bench --device cpu --seq $S --heads $H --head-dim $D \
      --density 0.05,0.1,0.25,0.5 --reps 5 --qkv-layout $lay --json | tee -a "$lines"
  done
done
# Summary: per layout and density, the best time over the rounds, and the
# effective rate against the best dense rate ("x dense"); each round's own
# ratio shows the spread.
python3 - "$lines" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    j = json.loads(line)
    key = (j["qkv_layout"], j["layout"], j.get("density_target"))
    rows.setdefault(key, []).append(j)
print("# qkv  layout  target  density   best ms  x dense  per round")
for (q, lay, t), rs in sorted(rows.items(), key=lambda kv: str(kv[0])):
    if lay == "dense":
        continue
    dense = min(r["time_ms"] for r in rows[(q, "dense", None)])
    best = min(r["time_ms"] for r in rs)
    per = " ".join("%.2f" % (r["density"] * r["dense_time_ms"] / r["time_ms"]) for r in rs)
    print("# %-4s %-7s %-6s  %.4f  %8.1f  %7.2f  %s" % (q, lay, t, rs[0]["density"], best,
          rs[0]["density"] * dense / best, per))
PY
