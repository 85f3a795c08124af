#!/bin/sh
# The transformers trace dumper (python/bsa_trace_dump.py) on tiny random
# models; skipped (77) without python3, torch, transformers or h5py.
command -v python3 >/dev/null 2>&1 || { echo "SKIP: no python3"; exit 77; }
HF_HUB_OFFLINE=1 exec python3 "${BSA_SRCDIR:-.}/tests/trace_dump_test.py"
