#!/bin/sh
# make install into a scratch DESTDIR, then build and run a program against
# the installed libbsa through pkg-config, as a user embedding the library
# would: installed headers, libbsa.a and bsa.pc must be enough.
set -u
B="${BSA_BUILDDIR:-.}"
T=$(mktemp -d "${TMPDIR:-/tmp}/bsa-install.XXXXXX")
trap 'rm -rf "$T"' EXIT
# A make of our own, not a job of the make running the tests.
unset MAKEFLAGS MFLAGS MAKELEVEL
command -v pkg-config >/dev/null || { echo "no pkg-config: skipped"; exit 77; }

make -s -C "$B" install DESTDIR="$T" >"$T/install.log" 2>&1 || {
  cat "$T/install.log"; echo "FAIL: make install"; exit 1; }
pc=$(find "$T" -name bsa.pc | head -1)
[ -n "$pc" ] || { echo "FAIL: no bsa.pc installed"; exit 1; }
for f in include/bsa.h include/bsa/core.h lib/libbsa.a bin/bsa; do
  find "$T" -path "*/$f" | grep -q . || { echo "FAIL: $f not installed"; exit 1; }
done
# Module headers are internal to the tool.
if find "$T" -name runlog.h | grep -q .; then echo "FAIL: runlog.h installed"; exit 1; fi

cat >"$T/user.c" <<'C'
#include <bsa.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
/* Dense attention of 2 heads x 37 tokens x 16 dims against a plain loop. */
int main(void) {
  enum { H = 2, S = 37, D = 16 };
  static float q[S * H * D], k[S * H * D], v[S * H * D], o[S * H * D];
  unsigned x = 12345;
  for (int i = 0; i < S * H * D; i++) {
    x = x * 1664525u + 1013904223u; q[i] = (float)(x >> 8) / 16777216.0f - 0.5f;
    x = x * 1664525u + 1013904223u; k[i] = (float)(x >> 8) / 16777216.0f - 0.5f;
    x = x * 1664525u + 1013904223u; v[i] = (float)(x >> 8) / 16777216.0f - 0.5f;
  }
  bsa_ctx *ctx;
  bsa_plan *plan;
  bsa_attn_params p = {0};
  p.num_qo_heads = p.num_kv_heads = H; p.head_dim = D; p.qo_len = p.kv_len = S; p.causal = 1;
  if (bsa_ctx_create(NULL, &ctx) || bsa_plan_create_dense(ctx, &p, &plan) ||
      bsa_plan_run(plan, q, k, v, o, NULL)) {
    printf("error: %s\n", bsa_last_error());
    return 1;
  }
  double num = 0, den = 0;
  for (int h = 0; h < H; h++)
    for (int i = 0; i < S; i++) {
      double s[S], m = -1e300, l = 0;
      for (int j = 0; j <= i; j++) {
        double a = 0;
        for (int d = 0; d < D; d++) a += q[(i * H + h) * D + d] * k[(j * H + h) * D + d];
        s[j] = a / sqrt((double)D);
        if (s[j] > m) m = s[j];
      }
      for (int j = 0; j <= i; j++) l += exp(s[j] - m);
      for (int d = 0; d < D; d++) {
        double r = 0;
        for (int j = 0; j <= i; j++) r += exp(s[j] - m) / l * v[(j * H + h) * D + d];
        num += (o[(i * H + h) * D + d] - r) * (o[(i * H + h) * D + d] - r);
        den += r * r;
      }
    }
  bsa_plan_destroy(plan);
  bsa_ctx_destroy(ctx);
  printf("bsa %s, rel L2 %.2e\n", bsa_version(), sqrt(num / den));
  return sqrt(num / den) < 1e-5 ? 0 : 1;
}
C
export PKG_CONFIG_PATH="$(dirname "$pc")" PKG_CONFIG_SYSROOT_DIR="$T"
cflags=$(pkg-config --cflags bsa) && libs=$(pkg-config --libs --static bsa) ||
  { echo "FAIL: pkg-config bsa"; exit 1; }
${CC:-cc} $cflags -o "$T/user" "$T/user.c" $libs -lm 2>"$T/cc.log" ||
  { cat "$T/cc.log"; echo "FAIL: a program does not build against the installed libbsa"; exit 1; }
"$T/user" || { echo "FAIL: the installed libbsa gave a wrong result"; exit 1; }
echo "install_check: all passed"
