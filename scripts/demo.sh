#!/usr/bin/env bash
# scripts/demo.sh - installs what is missing, builds, and runs the main job on
# the shipped sample data: attention benchmarks (CPU, and CUDA when a GPU is
# present), mask generation with every method on the sample traces, their
# evaluation and timing, pictures, and the experiment log of it all.
# Everything goes to out/ (log: out/bsa-runs.db).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$BSA_ROOT"
OUT="$BSA_ROOT/out"
mkdir -p "$OUT"
DB="$OUT/bsa-runs.db"
bsa() { "$BSA" --db "$DB" "$@"; }
section() { printf '\n== %s\n' "$*"; }
DEMO_START=$(date -u +%Y-%m-%dT%H:%M:%S)

section "1. CPU attention: dense vs fixed-block (BSR 128x128) vs variable blocks (64x64), f32, HND"
bsa bench --device cpu --seq 4096 --heads 8 --head-dim 128 --qkv-layout hnd \
  --density 0.05,0.1,0.25,0.5 --reps 3

section "2. CUDA attention"
if "$BSA" bench --help >/dev/null && command -v nvidia-smi >/dev/null 2>&1 &&
   nvidia-smi -L >/dev/null 2>&1 && grep -q "CUDA backend : yes" "$BSA_BUILD/configure.log"; then
  # One density a run, each with its own dense timed just before it: on
  # the H100 the third sparse plan timed in one process reads 5-17% slow
  # (docs/PERF.md, run 11).
  for d in 0.05 0.1 0.25 0.5; do
    bsa bench --device cuda --seq 8192 --heads 32 --head-dim 128 --dtype bf16 --density "$d"
  done
else
  echo "no GPU on this machine (or no CUDA build): the CUDA benchmark is skipped"
fi

section "3. Sample traces"
for t in data/minilm-gpl3.h5 data/synth-gqa.h5; do bsa trace info "$t"; echo; done

section "4. Masks from the traces with each method, evaluated against dense attention"
gen() { # trace name method args...
  local trace=$1 name=$2 method=$3; shift 3
  bsa -q maskgen --trace "$trace" --out "$OUT/$name-$method.h5" --method "$method" "$@" >/dev/null
  bsa -q eval --trace "$trace" --masks "$OUT/$name-$method.h5" --json >"$OUT/$name-$method.eval.jsonl"
}
for spec in "data/minilm-gpl3.h5 minilm 32" "data/synth-gqa.h5 synth 64"; do
  set -- $spec
  gen "$1" "$2" oracle --block "$3" --top-p 0.9 --sink-blocks 1
  gen "$1" "$2" pooled --block "$3" --top-p 0.9 --sink-blocks 1
  gen "$1" "$2" kmeans --q-clusters 16 --k-clusters 16 --top-p 0.9 --seed 0
done
python3 - "$OUT" <<'PY'
import json, sys, glob, os
rows = []
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.eval.jsonl"))):
    trace, method = os.path.basename(f)[:-len(".eval.jsonl")].rsplit("-", 1)
    summ = [json.loads(l) for l in open(f) if l.strip()]
    summ = [s for s in summ if s.get("head") is None]
    n = len(summ)
    mean = lambda k: sum(s[k] for s in summ) / n
    rows.append((trace, method, n, mean("density"), mean("recall"), mean("rel_l2")))
print(f"{'trace':8} {'method':8} {'records':>7} {'density':>8} {'recall':>7} {'rel_l2':>8}")
for r in rows:
    print(f"{r[0]:8} {r[1]:8} {r[2]:7d} {r[3]:8.3f} {r[4]:7.3f} {r[5]:8.4f}")
PY

# A top-p sweep, so the recall chart has a curve per method.
mkdir -p "$OUT/sweep"
for p in 0.7 0.8 0.95; do
  for m in oracle pooled; do
    bsa -q maskgen --trace data/synth-gqa.h5 --out "$OUT/sweep/synth-$m-$p.h5" --method $m --block 64 --top-p $p >/dev/null
    bsa -q eval --trace data/synth-gqa.h5 --masks "$OUT/sweep/synth-$m-$p.h5" >/dev/null
  done
  bsa -q maskgen --trace data/synth-gqa.h5 --out "$OUT/sweep/synth-kmeans-$p.h5" --method kmeans --q-clusters 16 --k-clusters 16 --top-p $p >/dev/null
  bsa -q eval --trace data/synth-gqa.h5 --masks "$OUT/sweep/synth-kmeans-$p.h5" >/dev/null
done

section "5. The generated masks timed on the traces' own q/k/v (CPU)"
bsa bench --masks "$OUT/synth-kmeans.h5" --trace data/synth-gqa.h5 --reps 3
bsa bench --masks "$OUT/minilm-oracle.h5" --trace data/minilm-gpl3.h5 --reps 3 --records 'layer0[0-2]'

section "6. Pictures"
bsa viz masks --masks "$OUT/synth-kmeans.h5" --record layer00 --trace data/synth-gqa.h5 --out "$OUT/synth-kmeans-permuted.png"
bsa viz masks --masks "$OUT/synth-kmeans.h5" --record layer00 --order original --out "$OUT/synth-kmeans-original.png"
bsa viz masks --masks "$OUT/minilm-oracle.h5" --record layer03 --heads 0-3 --trace data/minilm-gpl3.h5 --out "$OUT/minilm-oracle.png"
bsa viz scores --trace data/minilm-gpl3.h5 --record layer03 --block 16 --out "$OUT/minilm-scores.png"
bsa viz speedup --out "$OUT/speedup.png"
bsa viz recall --out "$OUT/recall.png"
echo "PNGs:"; ls -1 "$OUT"/*.png | sed 's/^/  /'

section "7. The experiment log ($DB)"
ids=$(bsa runs list --verb maskgen --status ok --limit 2 --json |
  sed -n 's/^{"id":\([0-9]*\),.*/\1/p' | tr '\n' ' ')
if [ -n "$ids" ]; then bsa runs compare $ids --diff; echo; fi
bsa runs export --format csv >"$OUT/runs.csv" &&
  echo "every metric as one table (pandas.read_csv): $OUT/runs.csv"
echo
bsa runs list --since "$DEMO_START"
