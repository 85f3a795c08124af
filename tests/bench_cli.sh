#!/bin/sh
# bsa --version and bsa bench from the command line: the JSON keys of
# DESIGN section 8, densities measured from the plan, the run and metrics
# recorded in the log, masks mode on a synthetic trace, and usage errors
# (exit 2, naming the option and the value).
set -u
. "$(dirname "$0")/cli_lib.sh"
cli_setup bench-cli

"$BSA" --version >"$T/out" || fail "--version exited non-zero"
grep -qE '^bsa [0-9]+\.[0-9]+\.[0-9]+$' "$T/out" || fail "--version printed '$(cat "$T/out")'"

DB="$T/runs.db"
seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
"$BSA" --db "$DB" bench --seq 256 --heads 4 --kv-heads 2 --head-dim 32 --block 32 \
  --blocks 8x8 --density 0.25,0.5 --reps 2 --seed "$seed" --json >"$T/json" 2>"$T/err" ||
  fail "bench --json: $(cat "$T/err")"
[ "$(wc -l <"$T/json")" = 5 ] || fail "want 5 lines (dense, 2 bsr, 2 var): $(cat "$T/json")"
for key in device layout seq heads kv_heads head_dim dtype density time_ms dense_time_ms \
  speedup vs_dense tflops_effective; do
  n=$(grep -c "\"$key\":" "$T/json")
  [ "$n" = 5 ] || fail "key $key in $n of 5 lines"
done
grep -q '"layout":"bsr".*"density_target":0.25,"block":32,"density":0.25,' "$T/json" ||
  fail "bsr at 0.25 keeps 2 of 8 blocks per row: $(grep bsr "$T/json")"
grep -q '"layout":"dense".*"density":1,' "$T/json" || fail "dense density is not 1"
# A map depends on the seed, layout and density, not on the maps drawn
# before it: the variable-block partition (and so the measured density) at
# 0.25 is the same alone as after the BSR maps of the run above.
"$BSA" --no-log bench --seq 256 --heads 4 --kv-heads 2 --head-dim 32 --layout var \
  --blocks 8x8 --density 0.25 --reps 1 --seed "$seed" --json >"$T/alone" 2>"$T/err" ||
  fail "bench --density 0.25: $(cat "$T/err")"
d_list=$(grep '"layout":"var".*"density_target":0.25' "$T/json" | sed 's/.*"density":\([0-9.e-]*\),.*/\1/')
d_alone=$(grep '"layout":"var"' "$T/alone" | sed 's/.*"density":\([0-9.e-]*\),.*/\1/')
[ -n "$d_list" ] && [ "$d_list" = "$d_alone" ] ||
  fail "var map at 0.25 differs alone ($d_alone) and after other maps ($d_list)"
grep -q '"layout":"dense".*"speedup":1,"vs_dense":1,' "$T/json" || fail "dense vs_dense is not 1"
# vs_dense is density x speedup on every line.
awk -F'[{}:,]' '{ for (i = 1; i < NF; i++) { k[$i] = $(i + 1) } }
  { d = k["\"density\""]; s = k["\"speedup\""]; v = k["\"vs_dense\""];
    if (v - d * s > 1e-4 * (d * s) + 1e-9 || d * s - v > 1e-4 * (d * s) + 1e-9) bad = bad NR " " }
  END { if (bad != "") { print bad; exit 1 } }' "$T/json" >"$T/bad" ||
  fail "vs_dense is not density x speedup on lines $(cat "$T/bad")"

# The run and its metrics are in the log.
"$BSA" --db "$DB" runs list --verb bench >"$T/list" || fail "runs list"
grep -q "bench .* ok" "$T/list" || fail "bench run not listed ok: $(cat "$T/list")"
"$BSA" --db "$DB" runs show 1 >"$T/show" || fail "runs show"
grep -q "speedup" "$T/show" || fail "no speedup metric in the run"
grep -q "vs_dense" "$T/show" || fail "no vs_dense metric in the run"
grep -q "tflops_effective" "$T/show" || fail "no tflops_effective metric in the run"

# Causal: density counts the causal triangle.
"$BSA" --no-log bench --seq 256 --heads 2 --head-dim 16 --layout dense --causal --reps 1 \
  --json >"$T/causal" || fail "bench --causal"
grep -q '"causal":true' "$T/causal" || fail "causal not reported"

# Masks mode on a small synthetic trace.
"$BSA" --no-log -q trace synth --out "$T/t.h5" --records 1 --seq 256 --heads 4 --kv-heads 2 \
  --head-dim 32 --seed "$seed" || fail "synth"
"$BSA" --no-log -q maskgen --trace "$T/t.h5" --out "$T/m.h5" --method kmeans --q-clusters 8 \
  --k-clusters 8 >/dev/null || fail "maskgen"
"$BSA" --no-log bench --masks "$T/m.h5" --trace "$T/t.h5" --reps 1 --json >"$T/mjson" 2>"$T/err" ||
  fail "bench --masks: $(cat "$T/err")"
grep -q '"layout":"masks","record":"layer00","method":"kmeans"' "$T/mjson" ||
  fail "masks line: $(cat "$T/mjson")"

# Usage errors: exit 2, naming the option and the value.
expect 2 "--density = 1.5 is out of range" "$BSA" --no-log bench --density 1.5
expect 2 "--density expects a number, got 'x'" "$BSA" --no-log bench --density 0.1,x
expect 2 "--device must be cpu or cuda, got 'tpu'" "$BSA" --no-log bench --device tpu
expect 2 "--layout must be dense, bsr, var or all, got 'coo'" "$BSA" --no-log bench --layout coo
expect 2 "--heads = 6 is not a multiple of --kv-heads = 4" "$BSA" --no-log bench --heads 6 --kv-heads 4
expect 2 "--blocks expects MBxNB" "$BSA" --no-log bench --blocks 8by8
expect 2 "--dtype must be f32, f16 or bf16, got 'fp8'" "$BSA" --no-log bench --dtype fp8
expect 2 "--masks and --trace go together" "$BSA" --no-log bench --masks "$T/m.h5"
expect 2 "unknown option '--bogus'" "$BSA" --no-log bench --bogus
expect 2 "--seq needs a value" "$BSA" --no-log bench --seq
# Failures while working: exit 1, naming the file or the limit.
expect 1 "--masks $T/none.h5" "$BSA" --no-log bench --masks "$T/none.h5" --trace "$T/t.h5"
# No GPU here (CI), or a build without CUDA: a clear failure, not a crash.
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  expect 1 "device = cuda:" "$BSA" --no-log bench --device cuda --seq 64
fi

[ "$fails" = 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "bench_cli: all passed (seed $seed)"
