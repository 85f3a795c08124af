#!/bin/sh
# h5py <-> bsa cross-checks (tests/trace_h5py.py); skipped without python3,
# h5py or numpy.
command -v python3 >/dev/null 2>&1 || { echo "SKIP: no python3"; exit 77; }
exec python3 "${BSA_SRCDIR:-.}/tests/trace_h5py.py"
