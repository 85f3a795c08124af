#!/usr/bin/env bash
# scripts/test.sh - installs what is missing, builds, and runs `make check`
# (every Check suite and CLI test; GPU tests skip without a device).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$BSA_BUILD"
status=0
make -j"$(nproc)" check || status=$?
# The Check suites' own summaries, then one closing line over all programs.
find tests -name '*.log' ! -name test-suite.log | sort | while read -r f; do
  line=$(grep -h "^[0-9]*%: Checks:" "$f" | tail -1 || true)
  if [ -n "$line" ]; then printf '%-32s %s\n' "$f" "$line"; fi
done
count() { { find tests -name '*.trs' -exec grep -l "^:test-result: $1" {} + || true; } | wc -l; }
pass=$(count PASS); fail=$(( $(count FAIL) + $(count ERROR) )); skip=$(count SKIP)
if [ "$status" -ne 0 ]; then
  find tests -name '*.log' ! -name test-suite.log | while read -r f; do
    if grep -qE "^(FAIL|ERROR)|Failures: [1-9]|Errors: [1-9]" "$f"; then
      echo "== $f"
      tail -40 "$f"
    fi
  done
fi
echo "tests: $pass passed, $fail failed, $skip skipped"
exit "$status"
