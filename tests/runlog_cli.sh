#!/bin/sh
# tests/runlog_cli.sh - `bsa runs` end to end: real runs recorded by real
# verbs into a fresh log, then list / show / compare / export and their
# errors, a run killed with SIGKILL shown as interrupted, and logs that must
# be left alone (missing, not SQLite).
#
# Needs $BSA_BUILDDIR (set by `make check`).  Python 3, when present, parses
# the JSON and CSV output; the Check suite parses them independently too.
set -u

BSA="${BSA_BUILDDIR:?run through make check or set BSA_BUILDDIR}/tools/bsa"
T=$(mktemp -d "${TMPDIR:-/tmp}/bsa-runlog-cli-XXXXXX")
BG=
cleanup() {
  if [ -n "$BG" ]; then kill -9 "$BG" 2>/dev/null; fi
  rm -rf "$T"
}
trap cleanup EXIT
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
  grep -qF -- "$2" "$1" || fail "$3: '$2' not in $(basename "$1"): $(head -c 400 "$1")"
}

have_python=no
if command -v python3 >/dev/null 2>&1; then have_python=yes; fi

# ---- a log that does not exist is not created by readers ----
expect 1 "$BSA" --db "$DB" runs list
contains "$T/err" "$DB" "missing log names the path"
[ -e "$DB" ] && fail "runs list created $DB"

# ---- real runs ----
# A random seed and density each time: fresh inputs for each check.
SEED=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
D1=0.$(( (SEED % 8) + 1 ))
D2=0.9
expect 0 "$BSA" --db "$DB" -q bench --seq 256 --heads 2 --head-dim 32 --layout bsr \
  --block 32 --density "$D1" --reps 1 --seed "$SEED"
expect 0 "$BSA" --db "$DB" -q bench --seq 256 --heads 2 --head-dim 32 --layout bsr \
  --block 32 --density "$D2" --reps 1 --seed "$SEED"
# An output path with a space, quotes and non-ASCII text.
TR="$T/tr \"ä\" '$SEED'.h5"
expect 0 "$BSA" --db "$DB" -q trace synth --out "$TR" --records 1 --heads 2 --seq 128 \
  --head-dim 16 --seed "$SEED"
expect 1 "$BSA" --db "$DB" -q bench --masks "$T/none.h5" --trace "$T/none.h5"
expect 0 "$BSA" --db "$DB" runs list
[ "$(grep -c ' bench ' "$T/out")" = 3 ] || fail "list shows 3 bench runs: $(cat "$T/out")"
contains "$T/out" "trace synth" "list shows trace synth"
contains "$T/out" "failed" "list shows the failed run"
# Newest first: the first data row is the failed bench (id 4).
first=$(sed -n 2p "$T/out" | awk '{print $1}')
[ "$first" = 4 ] || fail "newest first: first id is '$first'"

# ---- filters ----
expect 0 "$BSA" --db "$DB" runs list --verb bench --status ok
[ "$(grep -c ' ok ' "$T/out")" = 2 ] || fail "--verb bench --status ok: $(cat "$T/out")"
expect 0 "$BSA" --db "$DB" runs list --param density="$D2"
[ "$(tail -n +2 "$T/out" | wc -l)" = 1 ] || fail "--param density=$D2: $(cat "$T/out")"
expect 0 "$BSA" --db "$DB" runs list --since 2999-01-01
[ "$(tail -n +2 "$T/out" | wc -l)" = 0 ] || fail "--since 2999-01-01 lists runs"
TODAY=$(date -u +%Y-%m-%d)
expect 0 "$BSA" --db "$DB" runs list --since "$TODAY" --until "$TODAY" --limit 2 --json
[ "$(wc -l <"$T/out")" = 2 ] || fail "--limit 2 --json: $(cat "$T/out")"
contains "$T/out" '"id":4' "--json newest first"

# ---- show ----
expect 0 "$BSA" --db "$DB" runs show 3
contains "$T/out" "trace synth" "show verb"
contains "$T/out" "sha256" "show output hash"
contains "$T/out" "ä" "show keeps non-ASCII paths"
expect 0 "$BSA" --db "$DB" runs show 4
contains "$T/out" "failed" "show failed status"
contains "$T/out" "error" "show error line"
if [ "$have_python" = yes ]; then
  "$BSA" --db "$DB" runs show 3 --json >"$T/show.json" || fail "show --json"
  TR="$TR" python3 - "$T/show.json" <<'EOF' || fail "show --json content"
import hashlib, json, os, sys
run = json.load(open(sys.argv[1]))
out = run["outputs"][0]
assert out["path"] == os.environ["TR"], (out["path"], os.environ["TR"])
data = open(out["path"], "rb").read()
assert out["size"] == len(data)
assert out["sha256"] == hashlib.sha256(data).hexdigest()
assert run["status"] == "ok" and run["verb"] == "trace synth"
EOF
fi

# ---- compare ----
expect 0 "$BSA" --db "$DB" runs compare 1 2
grep -q '^\* density ' "$T/out" || fail "compare marks the density parameter: $(cat "$T/out")"
grep -q '^  seq ' "$T/out" || fail "compare shows equal parameters unmarked"
expect 0 "$BSA" --db "$DB" runs compare 1 2 --diff
grep -q '^  seq ' "$T/out" && fail "--diff shows an equal row"

# ---- export ----
expect 0 "$BSA" --db "$DB" runs export
head -n 1 "$T/out" | grep -q '^run_id,verb,status,started_at,ended_at,host,device' ||
  fail "CSV header: $(head -n 1 "$T/out")"
head -n 1 "$T/out" | od -c | grep -q '\\r  \\n' || fail "CSV lines end with CRLF"
if [ "$have_python" = yes ]; then
  cp "$T/out" "$T/all.csv"
  "$BSA" --db "$DB" runs export --format json >"$T/all.json" || fail "export json"
  "$BSA" --db "$DB" runs list --json >"$T/list.json" || fail "list json"
  python3 - "$T/all.csv" "$T/all.json" "$T/list.json" <<'EOF' || fail "export content"
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8")))
objs = json.load(open(sys.argv[2], encoding="utf-8"))
runs = [json.loads(l) for l in open(sys.argv[3], encoding="utf-8")]
want = sum(max(r["num_metrics"], 1) for r in runs)
assert len(rows) == want == len(objs), (len(rows), want, len(objs))
for r, o in zip(rows, objs):
    assert int(r["run_id"]) == o["run_id"]
    if o["value"] is not None:
        assert float(r["value"]) == o["value"]
    for k, v in o.items():
        if k.startswith("param.") and v is not None:
            assert r[k] == v, (k, r[k], v)
failed = [r for r in rows if r["status"] == "failed"]
assert len(failed) == 1 and failed[0]["metric"] == ""
EOF
fi
expect 0 "$BSA" --db "$DB" runs export --verb bench --metric speedup --format csv
[ "$(tail -n +2 "$T/out" | grep -c speedup)" -ge 2 ] || fail "export --metric speedup"
tail -n +2 "$T/out" | grep -v speedup | grep -q . && fail "export --metric keeps other metrics"

# ---- a run killed in the middle: interrupted ----
"$BSA" --db "$DB" -q bench --seq 8192 --heads 8 --head-dim 128 --layout dense --reps 100 \
  >/dev/null 2>&1 &
BG=$!
i=0
while [ $i -lt 200 ]; do
  "$BSA" --db "$DB" runs list --status running --json >"$T/running" 2>/dev/null
  [ -s "$T/running" ] && break
  sleep 0.05
  i=$((i + 1))
done
[ -s "$T/running" ] || fail "the background run never showed as running"
kill -9 "$BG"
wait "$BG" 2>/dev/null
BG=
expect 0 "$BSA" --db "$DB" runs list --status interrupted
[ "$(tail -n +2 "$T/out" | wc -l)" = 1 ] || fail "one interrupted run: $(cat "$T/out")"
id=$(sed -n 2p "$T/out" | awk '{print $1}')
expect 0 "$BSA" --db "$DB" runs show "$id"
contains "$T/out" "interrupted" "show interrupted"
contains "$T/out" "recorded as running" "show explains interrupted"
if command -v sqlite3 >/dev/null 2>&1; then
  [ "$(sqlite3 "$DB" 'PRAGMA integrity_check')" = ok ] || fail "integrity_check after kill"
fi
# Recording goes on after it.
expect 0 "$BSA" --db "$DB" -q trace synth --out "$T/t2.h5" --records 1 --heads 1 --seq 64 \
  --head-dim 16

# ---- usage errors: exit 2, one line naming the problem ----
expect 2 "$BSA" --db "$DB" runs list --status done
contains "$T/err" "'done'" "bad --status named"
expect 2 "$BSA" --db "$DB" runs list --since 2026-13-01
contains "$T/err" "2026-13-01" "bad --since named"
expect 2 "$BSA" --db "$DB" runs list --param density
contains "$T/err" "NAME=VALUE" "bad --param"
expect 2 "$BSA" --db "$DB" runs show x1
expect 2 "$BSA" --db "$DB" runs compare 1
expect 2 "$BSA" --db "$DB" runs export --format xml
expect 2 "$BSA" --db "$DB" runs frobnicate
expect 1 "$BSA" --db "$DB" runs show 999999
contains "$T/err" "999999" "missing run named"
expect 0 "$BSA" runs --help
contains "$T/out" "export" "help"

# ---- logs that are not ours are left alone ----
printf 'notes, not a database\n' >"$T/notes.db"
cp -p "$T/notes.db" "$T/notes.copy"
expect 1 "$BSA" --db "$T/notes.db" runs list
contains "$T/err" "$T/notes.db" "not-SQLite names the path"
expect 1 "$BSA" --db "$T/notes.db" -q trace synth --out "$T/t3.h5" --records 1 --heads 1 \
  --seq 64 --head-dim 16
cmp -s "$T/notes.db" "$T/notes.copy" || fail "a non-SQLite log was modified"
[ -e "$T/t3.h5" ] && fail "a verb ran although its log could not be opened"
expect 1 "$BSA" --db "$T/missing/dir/runs.db" -q trace synth --out "$T/t4.h5" --records 1 \
  --heads 1 --seq 64 --head-dim 16
contains "$T/err" "$T/missing/dir/runs.db" "missing folder named"
[ -e "$T/missing" ] && fail "a missing folder was created"

if [ "$fails" -gt 0 ]; then
  echo "runlog_cli.sh: $fails failure(s)" >&2
  exit 1
fi
echo "runlog_cli.sh: all checks passed"
exit 0
