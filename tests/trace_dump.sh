#!/bin/sh
# The transformers trace dumper (python/bsa_trace_dump.py) on tiny random
# models.  Uses the first Python (python3 on PATH, else /usr/bin/python3)
# that has torch, transformers and h5py; skipped (77) when none has them.
for py in python3 /usr/bin/python3; do
  if command -v "$py" >/dev/null 2>&1 &&
     "$py" -c 'import torch, transformers, h5py, numpy' 2>/dev/null; then
    HF_HUB_OFFLINE=1 exec "$py" "${BSA_SRCDIR:-.}/tests/trace_dump_test.py"
  fi
done
echo "SKIP: no python3 with torch, transformers, h5py (pip install torch transformers h5py)"
exit 77
