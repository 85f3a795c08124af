#!/bin/sh
# bench/gpu_bench.sh - the GPU session in one command: checks, our kernels at
# the target shapes, and the peers in the same run.  Builds nothing.
#
#   bench/gpu_bench.sh BIN_DIR [OUT_DIR] [STEPS]
#
# BIN_DIR holds check_gpu, attn_dev and (when built) bsa, as built by
# `make tests/gpu/check_gpu bench/attn_dev tools/bsa`, flat or in their
# build-tree places; bench/gpu_carry.sh BUILD_DIR BIN_DIR gathers them with
# bsa's shared libraries (lib.tar.xz, unpacked here).  OUT_DIR (default $OUT, else ./gpu-out) receives
# nvidia-smi.txt, check_gpu.log, bench.jsonl, bsa_bench.jsonl, peers.jsonl
# and peers.txt.  STEPS (default "check dev bsa peers") picks the steps:
# check = tests/gpu/check_gpu, dev = bench/attn_dev at the target shapes,
# bsa = `bsa bench --device cuda` at the target shapes, peers = peers.py.
# Exit status: 1 when the checks fail, else 0.
set -u
BIN=${1:?usage: gpu_bench.sh BIN_DIR [OUT_DIR] [STEPS]}
OUTD=${2:-${OUT:-./gpu-out}}
STEPS=${3:-check dev bsa peers}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUTD"

find_bin() {
  for c in "$BIN/$1" "$BIN/$2"; do
    if [ -x "$c" ]; then echo "$c"; return 0; fi
  done
  return 1
}
CHECK=$(find_bin check_gpu tests/gpu/check_gpu) || CHECK=
DEV=$(find_bin attn_dev bench/attn_dev) || DEV=
BSA=$(find_bin bsa tools/bsa) || BSA=
# Shared libraries packed by bench/gpu_carry.sh.
if [ -f "$BIN/lib.tar.xz" ]; then
  LIBD=$(mktemp -d)
  tar xJf "$BIN/lib.tar.xz" -C "$LIBD"
  LD_LIBRARY_PATH="$LIBD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LD_LIBRARY_PATH
fi

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
  --format=csv > "$OUTD/nvidia-smi.txt" 2>&1
cat "$OUTD/nvidia-smi.txt"

status=0
case " $STEPS " in *" check "*)
  if [ -n "$CHECK" ]; then
    # CHECK_SHARDS processes side by side (BSA_TEST_SHARD), one seed; each
    # test's time is mostly its process's CUDA start.
    n=${CHECK_SHARDS:-3}
    seed=${BSA_TEST_SEED:-$(( $(date +%s) ^ $$ ))}
    echo "== check_gpu ($n shards, BSA_TEST_SEED=$seed)"
    k=0
    pids=
    while [ $k -lt $n ]; do
      BSA_TEST_SEED=$seed BSA_TEST_SHARD=$k/$n CK_VERBOSITY=normal timeout 560 "$CHECK" \
        > "$OUTD/check_gpu.$k.log" 2>&1 &
      pids="$pids $!"
      k=$((k + 1))
    done
    rc=0
    for pid in $pids; do wait "$pid" || rc=1; done
    cat "$OUTD"/check_gpu.*.log > "$OUTD/check_gpu.log"
    grep -E "^[0-9]+%|shard|device" "$OUTD/check_gpu.log"
    grep -E ":[EF]:" "$OUTD/check_gpu.log" | head -20
    echo "check_gpu exit $rc"
    [ $rc -eq 0 ] || status=1
  else
    echo "gpu_bench: no check_gpu under $BIN" >&2
  fi;;
esac

case " $STEPS " in *" dev "*)
  if [ -n "$DEV" ]; then
    echo "== attn_dev"
    : > "$OUTD/bench.jsonl"
    run() { timeout 120 "$DEV" "$@" >> "$OUTD/bench.jsonl" 2>> "$OUTD/bench.err" || echo "attn_dev $* failed" >&2; }
    for d in 0.5 0.25 0.1 0.05; do run --layout bsr --block 128 --density $d; done
    run --layout dense --head-dim 64
    run --layout dense --kv-heads 8
    run --layout dense --causal
    run --layout dense --head-dim 256 --heads 16
    run --layout var --seq 32768 --blocks 100x100 --density 0.1 --reps 10
    run --layout var --seq 32768 --blocks 100x100 --density 0.3 --reps 10
    run --layout var --heads 24 --seq 75600 --blocks 400x1000 --density 0.1 --reps 5
    cat "$OUTD/bench.jsonl"
  fi;;
esac

case " $STEPS " in *" bsa "*)
  if [ -n "$BSA" ]; then
    echo "== bsa bench --device cuda"
    : > "$OUTD/bsa_bench.jsonl"
    B() { timeout 180 "$BSA" --no-log bench --device cuda --dtype bf16 --json "$@" >> "$OUTD/bsa_bench.jsonl" 2>> "$OUTD/bsa_bench.err" || echo "bsa bench $* failed" >&2; }
    # One density a process: each row's dense is timed just before it, and
    # no row is timed in the slowdown that met the third sparse plan of a
    # run (docs/PERF.md, run 11).
    for d in 0.5 0.25 0.1 0.05; do
      B --layout bsr --heads 32 --seq 8192 --head-dim 128 --block 128 --density $d
    done
    B --layout dense --heads 32 --seq 8192 --head-dim 64
    for d in 0.1 0.3; do
      B --layout var --heads 32 --seq 32768 --head-dim 128 --blocks 100x100 --density $d --reps 20
    done
    B --layout dense --heads 32 --kv-heads 8 --seq 8192 --head-dim 128 --causal
    B --layout var --heads 24 --seq 75600 --head-dim 128 --blocks 400x1000 --density 0.1 --reps 5 --warmup 2
    cat "$OUTD/bsa_bench.jsonl"
  fi;;
esac

case " $STEPS " in *" peers "*)
  echo "== peers"
  PYTHONUNBUFFERED=1 timeout 420 python3 "$HERE/peers.py" --suite targets --json "$OUTD/peers.jsonl" \
    > "$OUTD/peers.txt" 2> "$OUTD/peers.err"
  echo "peers exit $?"
  cat "$OUTD/peers.txt"
  tail -5 "$OUTD/peers.err";;
esac
exit $status
