#!/bin/sh
# h5py <-> bsa cross-checks (tests/trace_h5py.py).  Uses the first Python
# that has h5py and numpy: python3 on PATH, else the system's /usr/bin/python3
# (where Debian's python3-h5py installs); skipped (77) when neither has them.
for py in python3 /usr/bin/python3; do
  if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import h5py, numpy' 2>/dev/null; then
    exec "$py" "${BSA_SRCDIR:-.}/tests/trace_h5py.py"
  fi
done
echo "SKIP: no python3 with h5py and numpy (pip install h5py numpy, or apt-get install python3-h5py)"
exit 77
