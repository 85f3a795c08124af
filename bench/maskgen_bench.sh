#!/bin/sh
# bench/maskgen_bench.sh - times mask generation and evaluation on a record
# of 8 heads x 8192 tokens x D=128 (MHA, not causal), the size of the
# targets in docs/PERF.md ("maskgen"):
#   kmeans, 100 query + 100 key clusters, 20 iterations   (target < 5 s)
#   eval of those masks, every row, through libbsa         (target < 30 s)
# plus the oracle and pooled generators and a sampled eval for reference.
#
# usage: bench/maskgen_bench.sh [BUILD_DIR] [--seq S] [--heads H] [--threads N]
# The trace is synthesised once into $TMPDIR (about 90 MB) and removed after.
# Times are the generators' own (the time_ms of --json, file I/O excluded) and
# the wall time of each command; the load average is printed first, because
# on a shared machine other work skews them, and so is the OpenBLAS core in
# use: OpenBLAS 0.3.21 does not recognise some virtual CPUs and falls back to
# its SSE3 "Prescott" kernels; OPENBLAS_CORETYPE=SkylakeX (or Haswell) in the
# environment picks the right ones.
set -eu
BUILD=${1:-build}
[ $# -gt 0 ] && shift
SEQ=8192 HEADS=8 THREADS=0
while [ $# -gt 0 ]; do
  case $1 in
    --seq) SEQ=$2; shift 2 ;;
    --heads) HEADS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
BSA="$BUILD/tools/bsa"
[ -x "$BSA" ] || { echo "no $BSA: build first (make tools/bsa)" >&2; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/bsa-maskgen-bench.XXXXXX")
trap 'rm -rf "$T"' EXIT
G="--no-log"
[ "$THREADS" -gt 0 ] && G="$G --threads $THREADS"

now() { date +%s.%N; }
field() { grep -o "\"$1\":[-0-9.e+]*" | head -n1 | cut -d: -f2; }

echo "host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "OpenBLAS core: $(OPENBLAS_VERBOSE=2 "$BSA" --version 2>&1 | sed -n 's/^Core: //p')" \
  "(OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset})"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "record: $HEADS heads x $SEQ tokens x D=128, float32, not causal"
"$BSA" $G -q trace synth --out "$T/t.h5" --records 1 --heads "$HEADS" --kv-heads "$HEADS" \
  --seq "$SEQ" --head-dim 128 --seed 1

run_gen() { # label args...
  label=$1; shift
  t0=$(now)
  ms=$("$BSA" $G maskgen --trace "$T/t.h5" --json "$@" | field time_ms)
  t1=$(now)
  printf '%-44s %9.0f ms  (wall %5.1f s)\n' "$label" "$ms" "$(awk "BEGIN { print $t1 - $t0 }")"
}
run_eval() { # label masks args...
  label=$1; m=$2; shift 2
  t0=$(now)
  out=$("$BSA" $G eval --trace "$T/t.h5" --masks "$m" --json "$@" | grep '"head":null')
  t1=$(now)
  printf '%-44s %9.0f ms  (wall %5.1f s)  density %.3f recall %.3f rel_l2 %.4f\n' "$label" \
    "$(echo "$out" | field time_ms)" "$(awk "BEGIN { print $t1 - $t0 }")" "$(echo "$out" | field density)" \
    "$(echo "$out" | field recall)" "$(echo "$out" | field rel_l2)"
}

run_gen "kmeans 100x100 clusters, 20 iters" --out "$T/k.h5" --method kmeans \
  --q-clusters 100 --k-clusters 100 --iters 20 --top-p 0.9
run_gen "oracle 128x128 blocks, top-p 0.9" --out "$T/o.h5" --method oracle --block 128 --top-p 0.9
run_gen "pooled 128x128 blocks, top-p 0.9" --out "$T/p.h5" --method pooled --block 128 --top-p 0.9
run_eval "eval kmeans masks, every row" "$T/k.h5"
run_eval "eval oracle masks, every row" "$T/o.h5"
run_eval "eval kmeans masks, 1024 sampled rows" "$T/k.h5" --sample-rows 1024
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
