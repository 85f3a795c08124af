#!/bin/sh
# bsa trace synth / info from the command line: output, determinism, the
# runs they log, usage errors (exit 2, naming the option and value) and
# failures (exit 1, naming the file) that leave existing files untouched.
set -u
. "$(dirname "$0")/cli_lib.sh"
cli_setup trace-cli
SRC="${BSA_SRCDIR:-.}"

seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
DB="$T/runs.db"

# synth writes what it says, deterministically for a seed.
"$BSA" --db "$DB" trace synth --out "$T/a.h5" --records 3 --seq 128 --heads 6 --kv-heads 3 \
  --head-dim 16 --seed "$seed" --causal >"$T/out" 2>"$T/err" || fail "synth: $(cat "$T/err")"
grep -q "wrote $T/a.h5: 3 records, q \[6, 128, 16\], k/v \[3, 128, 16\], float32, causal" "$T/out" \
  || fail "synth output: $(cat "$T/out")"
"$BSA" --no-log -q trace synth --out "$T/b.h5" --records 3 --seq 128 --heads 6 --kv-heads 3 \
  --head-dim 16 --seed "$seed" --causal || fail "synth again"
cmp -s "$T/a.h5" "$T/b.h5" || fail "the same seed gave different files"
"$BSA" --no-log -q trace synth --out "$T/c.h5" --records 3 --seq 128 --heads 6 --kv-heads 3 \
  --head-dim 16 --seed $((seed + 1)) --causal || fail "synth seed+1"
cmp -s "$T/a.h5" "$T/c.h5" && fail "different seeds gave the same file"

# info: the table and --json.
"$BSA" --db "$DB" trace info "$T/a.h5" >"$T/out" 2>"$T/err" || fail "info: $(cat "$T/err")"
grep -q "bsa-trace version 1, 3 records" "$T/out" || fail "info header: $(cat "$T/out")"
grep -q "^layer02 .* 6x128x16 .* 3x128x16 .* float32 .*planted" "$T/out" || fail "info row: $(cat "$T/out")"
"$BSA" --no-log trace info "$T/a.h5" --json >"$T/json" || fail "info --json"
[ "$(wc -l <"$T/json")" = 4 ] || fail "info --json: $(wc -l <"$T/json") lines, want 4"
grep -q '"record":"layer01","layer":1,"step":-1,"causal":1,"num_qo_heads":6,"num_kv_heads":3,"head_dim":16,"qo_len":128' \
  "$T/json" || fail "info --json record line: $(cat "$T/json")"
grep -q '"model":"synthetic"' "$T/json" || fail "info --json model"

# The shipped sample traces.
for f in "$SRC/data/minilm-gpl3.h5" "$SRC/data/synth-gqa.h5"; do
  "$BSA" --no-log trace info "$f" >"$T/out" 2>"$T/err" || fail "info $f: $(cat "$T/err")"
done
"$BSA" --no-log trace info "$SRC/data/minilm-gpl3.h5" >"$T/out"
grep -q "^layer05 .* 12x512x32 .* float16" "$T/out" || fail "minilm info: $(cat "$T/out")"

# Both runs were logged with their parameters and files.
if command -v sqlite3 >/dev/null 2>&1; then
  n=$(sqlite3 "$DB" "select count(*) from runs where verb like 'trace%'" 2>/dev/null) || n=""
  [ -z "$n" ] || [ "$n" = 2 ] || fail "runs logged: $n, want 2"
fi

# Usage errors: exit 2, naming the option and the value.
expect 2 "--out T.h5 is required" "$BSA" --no-log trace synth
expect 2 "--heads = 6 is not a multiple of --kv-heads = 4" "$BSA" --no-log trace synth --out "$T/x.h5" --heads 6 --kv-heads 4
expect 2 "--seq = 8 is out of range" "$BSA" --no-log trace synth --out "$T/x.h5" --seq 8
expect 2 "--head-dim = 4 is out of range" "$BSA" --no-log trace synth --out "$T/x.h5" --head-dim 4
expect 2 "--dtype must be f32 or f16, got 'bf16'" "$BSA" --no-log trace synth --out "$T/x.h5" --dtype bf16
expect 2 "--clusters = 500 is more than --seq = 64" "$BSA" --no-log trace synth --out "$T/x.h5" --seq 64 --clusters 500
expect 2 "--records expects an integer, got 'many'" "$BSA" --no-log trace synth --out "$T/x.h5" --records many
expect 2 "unknown option '--bogus'" "$BSA" --no-log trace synth --out "$T/x.h5" --bogus
expect 2 "unknown sub-command 'show'" "$BSA" --no-log trace show "$T/a.h5"
expect 2 "info needs a trace file" "$BSA" --no-log trace info
[ -e "$T/x.h5" ] && fail "a usage error wrote a file"

# Failures: exit 1 naming the file; nothing the user owns is changed.
expect 1 "$T/missing.h5: cannot open" "$BSA" --no-log trace info "$T/missing.h5"
printf 'not hdf5\n' >"$T/text.h5"
expect 1 "$T/text.h5: not an HDF5 file" "$BSA" --no-log trace info "$T/text.h5"
head -c 3000 "$T/a.h5" >"$T/cut.h5"
expect 1 "truncated" "$BSA" --no-log trace info "$T/cut.h5"
expect 1 "$T/nowhere/t.h5" "$BSA" --no-log trace synth --out "$T/nowhere/t.h5" --seq 64
cp "$T/a.h5" "$T/keep.h5"
mkdir "$T/dir.h5"
expect 1 "it is a folder" "$BSA" --no-log trace synth --out "$T/dir.h5" --seq 64
cmp -s "$T/a.h5" "$T/keep.h5" || fail "an existing file changed"
ls "$T" | grep -q '\.tmp-' && fail "temporary files left: $(ls "$T")"

"$BSA" trace --help | grep -q "usage: bsa trace synth" || fail "trace --help"

if [ "$fails" = 0 ]; then echo "trace_cli: all passed (seed $seed)"; exit 0; fi
echo "trace_cli: $fails failures (seed $seed)"
exit 1
