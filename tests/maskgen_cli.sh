#!/bin/sh
# bsa maskgen and bsa eval from the command line: trace synth -> maskgen
# (each method) -> eval --json; what the files and lines hold, determinism
# of kmeans for a seed, the runs logged, usage errors (exit 2, naming the
# option and value) and failures (exit 1) that leave existing files
# untouched.
set -u
. "$(dirname "$0")/cli_lib.sh"
cli_setup maskgen-cli
# num KEY FILE: the values of a numeric JSON key, one per line
num() { grep -o "\"$1\":[-0-9.e+]*" "$2" | cut -d: -f2; }

seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
DB="$T/runs.db"
"$BSA" --no-log -q trace synth --out "$T/t.h5" --records 2 --seq 256 --heads 4 --kv-heads 2 \
  --head-dim 32 --seed "$seed" || fail "synth"
"$BSA" --no-log -q trace synth --out "$T/c.h5" --records 1 --seq 200 --heads 2 --kv-heads 1 \
  --head-dim 16 --seed "$seed" --causal || fail "synth causal"

# Each method writes a masks file that eval reads; eval --json prints one
# line per kv head and one summary line (head null) per record.
for spec in "oracle --block 32 --top-p 0.8 --sink-blocks 1 --local-blocks 1" \
            "pooled --block-q 32 --block-k 16 --top-k 3" \
            "oracle --block 64 --threshold 0.05" \
            "kmeans --q-clusters 12 --k-clusters 10 --top-p 0.85 --seed 7"; do
  set -- $spec
  m=$1
  "$BSA" --db "$DB" maskgen --trace "$T/t.h5" --out "$T/$m.h5" --method $spec --json \
    >"$T/gen.json" 2>"$T/err" || fail "maskgen $spec: $(cat "$T/err")"
  [ "$(wc -l <"$T/gen.json")" = 2 ] || fail "maskgen $spec --json: $(cat "$T/gen.json")"
  grep -q "\"method\":\"$m\"" "$T/gen.json" || fail "maskgen json method: $(cat "$T/gen.json")"
  "$BSA" --db "$DB" eval --trace "$T/t.h5" --masks "$T/$m.h5" --json >"$T/eval.json" \
    2>"$T/err" || fail "eval $m: $(cat "$T/err")"
  [ "$(wc -l <"$T/eval.json")" = 6 ] || fail "eval $m: $(wc -l <"$T/eval.json") lines, want 6"
  [ "$(grep -c '"head":null' "$T/eval.json")" = 2 ] || fail "eval $m: summary lines"
  for k in density recall rel_l2 rel_l1 cosine density_full density_blocks; do
    [ "$(num $k "$T/eval.json" | wc -l)" = 6 ] || fail "eval $m: key $k missing"
  done
  num recall "$T/eval.json" | awk '$1 < 0 || $1 > 1 { bad = 1 } END { exit bad }' \
    || fail "eval $m: recall outside [0, 1]"
  num density "$T/eval.json" | awk '$1 <= 0 || $1 > 1 { bad = 1 } END { exit bad }' \
    || fail "eval $m: density outside (0, 1]"
done
# The oracle's recall reaches its top-p on every record (mean over rows).
"$BSA" --no-log eval --masks "$T/oracle.h5" --json >"$T/eval.json" || fail "eval (trace path from the masks file)"
grep '"head":null' "$T/eval.json" | grep -o '"recall":[-0-9.e+]*' | cut -d: -f2 |
  awk '$1 < 0.8 - 1e-4 { bad = 1 } END { exit bad }' || fail "oracle recall below top-p"

# A full mask (top-p 1 keeps every block with mass): no output error.
"$BSA" --no-log -q maskgen --trace "$T/t.h5" --out "$T/full.h5" --method oracle --block 16 \
  --threshold 0 || fail "maskgen threshold 0"
"$BSA" --no-log eval --trace "$T/t.h5" --masks "$T/full.h5" --json >"$T/eval.json" || fail "eval full"
num rel_l2 "$T/eval.json" | awk '$1 > 1e-5 { bad = 1 } END { exit bad }' || fail "full mask rel_l2 > 1e-5"
num density "$T/eval.json" | awk '$1 != 1 { bad = 1 } END { exit bad }' || fail "full mask density != 1"

# The table, sampled rows, --records.
"$BSA" --no-log eval --trace "$T/t.h5" --masks "$T/kmeans.h5" >"$T/out" || fail "eval table"
grep -q "^layer01 .* all " "$T/out" || fail "eval table: $(cat "$T/out")"
"$BSA" --no-log eval --trace "$T/t.h5" --masks "$T/kmeans.h5" --sample-rows 64 --seed 3 \
  --records layer01 --json >"$T/eval.json" || fail "eval --sample-rows"
[ "$(wc -l <"$T/eval.json")" = 3 ] || fail "eval --records: $(cat "$T/eval.json")"
grep -q '"rows":64,"sampled":true' "$T/eval.json" || fail "sampled rows not stated: $(cat "$T/eval.json")"

# kmeans is deterministic for a seed; another seed gives other masks.
"$BSA" --no-log -q maskgen --trace "$T/t.h5" --out "$T/k2.h5" --method kmeans --q-clusters 12 \
  --k-clusters 10 --top-p 0.85 --seed 7 || fail "kmeans again"
cmp -s "$T/kmeans.h5" "$T/k2.h5" || fail "kmeans with the same seed gave a different file"
"$BSA" --no-log -q maskgen --trace "$T/t.h5" --out "$T/k3.h5" --method kmeans --q-clusters 12 \
  --k-clusters 10 --top-p 0.85 --seed 8 || fail "kmeans seed 8"
cmp -s "$T/kmeans.h5" "$T/k3.h5" && fail "kmeans seeds 7 and 8 gave the same file"

# Causal records: oracle works and eval reports the causal density.
"$BSA" --no-log -q maskgen --trace "$T/c.h5" --out "$T/co.h5" --method oracle --block 20 \
  --top-p 0.9 || fail "oracle causal"
"$BSA" --no-log eval --trace "$T/c.h5" --masks "$T/co.h5" --json >"$T/eval.json" || fail "eval causal"
[ "$(num density_causal "$T/eval.json" | wc -l)" = 2 ] || fail "causal density missing: $(cat "$T/eval.json")"

# The runs are in the log with their metrics.
if command -v sqlite3 >/dev/null 2>&1; then
  n=$(sqlite3 "$DB" "select count(*) from runs where verb = 'maskgen' or verb = 'eval'" 2>/dev/null) || n=""
  [ -z "$n" ] || [ "$n" = 8 ] || fail "runs logged: $n, want 8"
fi

# Usage errors name the option and the value (exit 2); nothing is written.
expect 2 "--top-p = 1.5 is outside (0, 1]" "$BSA" --no-log maskgen --trace "$T/t.h5" \
  --out "$T/x.h5" --method oracle --top-p 1.5
expect 2 "--top-p = 0 is outside (0, 1]" "$BSA" --no-log maskgen --trace "$T/t.h5" \
  --out "$T/x.h5" --method kmeans --q-clusters 4 --k-clusters 4 --top-p 0
expect 2 "needs exactly one of --top-p, --top-k, --threshold (got none)" "$BSA" --no-log maskgen \
  --trace "$T/t.h5" --out "$T/x.h5" --method pooled
expect 2 "got several" "$BSA" --no-log maskgen --trace "$T/t.h5" --out "$T/x.h5" --method pooled \
  --top-p 0.5 --top-k 2
expect 2 "--method = 'svg2' is not a method" "$BSA" --no-log maskgen --trace "$T/t.h5" \
  --out "$T/x.h5" --method svg2
expect 2 "--method is required" "$BSA" --no-log maskgen --trace "$T/t.h5" --out "$T/x.h5"
expect 2 "--block is not an option of --method kmeans" "$BSA" --no-log maskgen --trace "$T/t.h5" \
  --out "$T/x.h5" --method kmeans --q-clusters 4 --k-clusters 4 --block 16
expect 2 "--q-clusters is not an option of --method oracle" "$BSA" --no-log maskgen \
  --trace "$T/t.h5" --out "$T/x.h5" --method oracle --top-p 0.5 --q-clusters 3
expect 2 "--method kmeans needs --q-clusters and --k-clusters" "$BSA" --no-log maskgen \
  --trace "$T/t.h5" --out "$T/x.h5" --method kmeans
expect 2 "--min-kc-ratio = 2 is out of range" "$BSA" --no-log maskgen --trace "$T/t.h5" \
  --out "$T/x.h5" --method kmeans --q-clusters 4 --k-clusters 4 --min-kc-ratio 2
expect 2 "--block expects an integer, got 'big'" "$BSA" --no-log maskgen --trace "$T/t.h5" \
  --out "$T/x.h5" --method oracle --top-p 0.5 --block big
expect 2 "--q-clusters = 300 exceeds the 256 query tokens of record 'layer00'" "$BSA" --no-log \
  maskgen --trace "$T/t.h5" --out "$T/x.h5" --method kmeans --q-clusters 300 --k-clusters 4
expect 2 "is the trace itself" "$BSA" --no-log maskgen --trace "$T/t.h5" --out "$T/t.h5" \
  --method oracle --top-p 0.5
expect 2 "--sample-rows expects an integer" "$BSA" --no-log eval --trace "$T/t.h5" \
  --masks "$T/oracle.h5" --sample-rows -3x
[ -e "$T/x.h5" ] && fail "a failed maskgen left $T/x.h5"

# Failures while working (exit 1) leave an existing output as it was.
cp "$T/oracle.h5" "$T/keep.h5"
expect 1 "is causal" "$BSA" --no-log maskgen --trace "$T/c.h5" --out "$T/keep.h5" --method kmeans \
  --q-clusters 4 --k-clusters 4
cmp -s "$T/oracle.h5" "$T/keep.h5" || fail "a failed maskgen changed the existing output"
expect 1 "no record matches --records 'nope*'" "$BSA" --no-log maskgen --trace "$T/t.h5" \
  --out "$T/keep.h5" --method oracle --top-p 0.5 --records 'nope*'
cmp -s "$T/oracle.h5" "$T/keep.h5" || fail "a failed maskgen changed the existing output"
expect 1 "missing.h5" "$BSA" --no-log maskgen --trace "$T/missing.h5" --out "$T/x.h5" \
  --method oracle --top-p 0.5
expect 1 "kv heads" "$BSA" --no-log eval --trace "$T/c.h5" --masks "$T/oracle.h5"
expect 1 "no record matches" "$BSA" --no-log eval --trace "$T/t.h5" --masks "$T/oracle.h5" \
  --records zzz

[ "$fails" = 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "maskgen_cli: all passed"
