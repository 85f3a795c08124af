#!/bin/sh
# tests/viz_cli.sh - `bsa viz` end to end on the shipped synthetic trace:
# masks made by `bsa maskgen` drawn in both orders (with recall from the
# trace), a score map, speedup and recall charts from the runs this script
# records, the provenance in the PNG text chunks and in the log, and the
# errors (missing file, missing record, bad options, unwritable path, no
# log, a log without the runs a chart needs): exit code, the argument named,
# no PNG left behind and an existing file unchanged.
#
# Needs $BSA_BUILDDIR and $BSA_SRCDIR (set by `make check`).  The pixels
# themselves are checked by tests/check_viz.
set -u

BSA="${BSA_BUILDDIR:?run through make check or set BSA_BUILDDIR}/tools/bsa"
TRACE="${BSA_SRCDIR:?run through make check or set BSA_SRCDIR}/data/synth-gqa.h5"
T=$(mktemp -d "${TMPDIR:-/tmp}/bsa-viz-cli-XXXXXX")
trap 'rm -rf "$T"' EXIT
DB="$T/runs.db"
fails=0

fail() {
  echo "FAIL: $*" >&2
  fails=$((fails + 1))
}

# expect CODE CMD...: runs CMD, output in $T/out and $T/err, checks the exit.
expect() {
  want=$1
  shift
  "$@" >"$T/out" 2>"$T/err"
  got=$?
  if [ "$got" != "$want" ]; then
    fail "exit $got (want $want): $*"
    sed 's/^/    /' "$T/err" >&2
  fi
}

contains() { # FILE TEXT WHAT
  grep -qaF -- "$2" "$1" || fail "$3: '$2' not in $(basename "$1"): $(head -c 400 "$1")"
}

is_png() { # FILE
  [ -f "$1" ] || { fail "$1 was not written"; return; }
  sig=$(od -An -tx1 -N8 "$1" | tr -d ' \n')
  [ "$sig" = "89504e470d0a1a0a" ] || fail "$1 is not a PNG (starts $sig)"
}

no_file() { # PATH WHAT
  [ -e "$1" ] && fail "$2: $1 exists"
  # No temporary file either.
  left=$(ls -A "$(dirname "$1")" | grep -c '\.tmp-' || true)
  [ "$left" = 0 ] || fail "$2: a temporary file was left in $(dirname "$1")"
}

SEED=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
P=0.$(( (SEED % 4) + 6 )) # top-p 0.6 .. 0.9: fresh inputs each time

# ---- help ----
expect 0 "$BSA" viz --help
contains "$T/out" "bsa viz masks" "help"
expect 2 "$BSA" viz
expect 2 "$BSA" viz nothing
contains "$T/err" "nothing" "unknown sub-command named"

# ---- masks from the trace ----
expect 0 "$BSA" --db "$DB" -q maskgen --trace "$TRACE" --out "$T/km.h5" --method kmeans \
  --q-clusters 12 --k-clusters 12 --top-p "$P" --seed "$SEED"
expect 0 "$BSA" --db "$DB" -q maskgen --trace "$TRACE" --out "$T/or.h5" --method oracle \
  --block 64 --top-p "$P"
expect 0 "$BSA" --db "$DB" viz masks --masks "$T/km.h5" --out "$T/km.png" --trace "$TRACE"
is_png "$T/km.png"
contains "$T/out" "$T/km.png" "masks: where the PNG is"
ID=$(sed -n 's/.*run \([0-9][0-9]*\)).*/\1/p' "$T/out")
[ -n "$ID" ] || fail "masks: no run id printed: $(cat "$T/out")"
# Provenance in the PNG (tEXt chunks are stored uncompressed).
contains "$T/km.png" "bsa-command" "masks: command chunk"
contains "$T/km.png" "viz masks --masks $T/km.h5" "masks: command text"
contains "$T/km.png" "bsa-run-id" "masks: run id chunk"
contains "$T/km.png" "bsa-input-masks" "masks: input chunk"
contains "$T/km.png" "bsa-input-trace" "masks: trace input chunk"
# And in the log: the run with its parameters, inputs and artifact.
expect 0 "$BSA" --db "$DB" runs show "$ID"
contains "$T/out" "viz masks" "log: verb"
contains "$T/out" "$T/km.png" "log: artifact"
contains "$T/out" "$T/km.h5" "log: input"
contains "$T/out" "recall" "log: per-head recall metrics"

expect 0 "$BSA" --db "$DB" -q viz masks --masks "$T/km.h5" --out "$T/km-orig.png" \
  --order original --record layer01 --heads 1
is_png "$T/km-orig.png"
contains "$T/km-orig.png" "token order" "original order in the title"
expect 0 "$BSA" --no-log -q viz masks --masks "$T/or.h5" --out "$T/or.png" --panel-size 200
is_png "$T/or.png"
grep -qaF "bsa-run-id" "$T/or.png" && fail "--no-log: a run id chunk was written"

# ---- score map ----
expect 0 "$BSA" --db "$DB" -q viz scores --trace "$TRACE" --record layer00 --out "$T/sc.png" \
  --block 32 --head 1
is_png "$T/sc.png"
contains "$T/sc.png" "bsa-input-trace" "scores: input chunk"

# ---- charts from the runs of this log ----
expect 1 "$BSA" --db "$DB" viz speedup --out "$T/sp.png"
contains "$T/err" "no successful bench runs" "speedup without bench runs"
contains "$T/err" "--db $DB" "speedup error names the log"
no_file "$T/sp.png" "speedup without bench runs"
expect 0 "$BSA" --db "$DB" -q bench --seq 256 --heads 2 --head-dim 32 --block 32 \
  --blocks 8x8 --density 0.25,0.5 --reps 1 --seed "$SEED"
expect 0 "$BSA" --db "$DB" viz speedup --out "$T/sp.png"
is_png "$T/sp.png"
expect 1 "$BSA" --db "$DB" viz recall --out "$T/rc.png"
contains "$T/err" "no successful eval runs" "recall without eval runs"
no_file "$T/rc.png" "recall without eval runs"
expect 0 "$BSA" --db "$DB" -q eval --trace "$TRACE" --masks "$T/km.h5"
expect 0 "$BSA" --db "$DB" -q eval --trace "$TRACE" --masks "$T/or.h5"
expect 0 "$BSA" --db "$DB" viz recall --out "$T/rc.png"
is_png "$T/rc.png"
expect 0 "$BSA" --db "$DB" --no-log viz recall --out "$T/rc2.png" --runs 1-1000
is_png "$T/rc2.png"
expect 2 "$BSA" --db "$DB" viz recall --out "$T/rc3.png" --runs 3,x
contains "$T/err" "--runs" "bad --runs named"

# ---- errors ----
echo "precious $SEED" >"$T/keep.png"
expect 1 "$BSA" --db "$DB" viz masks --masks "$T/missing.h5" --out "$T/keep.png"
contains "$T/err" "--masks $T/missing.h5" "missing masks file named"
expect 1 "$BSA" --db "$DB" viz masks --masks "$T/km.h5" --out "$T/keep.png" --record nosuch
contains "$T/err" "--record nosuch" "missing record named"
contains "$T/err" "layer00" "missing record: the records are listed"
expect 1 "$BSA" --db "$DB" viz masks --masks "$TRACE" --out "$T/keep.png"
contains "$T/err" "--masks $TRACE" "a trace given as masks"
expect 2 "$BSA" --db "$DB" viz masks --masks "$T/km.h5" --out "$T/keep.png" --order sideways
contains "$T/err" "--order" "bad --order named"
expect 2 "$BSA" --db "$DB" viz masks --masks "$T/km.h5" --out "$T/keep.png" --heads 0,7
contains "$T/err" "--heads" "head out of range named"
expect 2 "$BSA" --db "$DB" viz masks --masks "$T/km.h5" --out "$T/keep.png" --block 4
contains "$T/err" "--block" "option of another sub-command named"
expect 2 "$BSA" --db "$DB" viz masks --masks "$T/km.h5"
contains "$T/err" "--out" "missing --out named"
expect 1 "$BSA" --db "$DB" viz scores --trace "$TRACE" --record nosuch --out "$T/keep.png"
contains "$T/err" "--record nosuch" "scores: missing record named"
expect 2 "$BSA" --db "$DB" viz scores --trace "$TRACE" --record layer00 --out "$T/keep.png" --head 9
contains "$T/err" "--head" "scores: head out of range named"
[ "$(cat "$T/keep.png")" = "precious $SEED" ] || fail "an existing file was changed by a failed render"
expect 1 "$BSA" --db "$DB" viz masks --masks "$T/km.h5" --out "$T/no/such/folder/m.png"
contains "$T/err" "--out $T/no/such/folder/m.png" "unwritable path named"
[ -e "$T/no" ] && fail "a folder was created for an unwritable path"
expect 1 "$BSA" --db "$DB" viz scores --trace "$TRACE" --record layer00 --out "$T/no/s.png"
contains "$T/err" "--out $T/no/s.png" "scores: unwritable path named"
expect 1 "$BSA" --db "$DB" viz masks --masks "$T/km.h5" --out "$T"
contains "$T/err" "folder" "a folder as --out"
# Charts read a log that exists; they never create one.
expect 1 "$BSA" --db "$T/none.db" viz speedup --out "$T/x.png"
contains "$T/err" "--db $T/none.db" "missing log named"
[ -e "$T/none.db" ] && fail "viz speedup created the log it was asked to read"
no_file "$T/x.png" "missing log"
# Failed renders are in the log as failed, with their error.
expect 0 "$BSA" --db "$DB" runs list --status failed
contains "$T/out" "viz masks" "failed renders recorded"

if [ "$fails" -ne 0 ]; then
  echo "$fails check(s) failed" >&2
  exit 1
fi
echo "viz CLI: all checks passed"
