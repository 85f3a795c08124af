# tests/cli_lib.sh - sourced by the CLI test scripts: the bsa binary, a
# scratch folder removed on exit, and failure counting.
#
#   . "$(dirname "$0")/cli_lib.sh"; cli_setup NAME
#
# cli_setup sets BSA (the built tool), T (the scratch folder) and fails; the
# script ends with the count of fail calls as its status.

cli_setup() {
  BSA="${BSA_BUILDDIR:-.}/tools/bsa"
  T=$(mktemp -d "${TMPDIR:-/tmp}/bsa-$1.XXXXXX")
  trap 'rm -rf "$T"' EXIT
  fails=0
}

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# expect CODE NEEDLE CMD...: exit status CODE and NEEDLE in stderr
expect() {
  code=$1; needle=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"; rc=$?
  [ "$rc" = "$code" ] || fail "$* exited $rc, want $code: $(cat "$T/err")"
  grep -qF -- "$needle" "$T/err" || fail "$*: stderr lacks '$needle': $(cat "$T/err")"
}
