/*
 * lib/cpu_gemm.c - the small matrix product of the CPU backend.
 *
 * C[M, N] (+)= A[M, K] B[K, N], all row-major, N a multiple of 32.  The
 * attention tiles are small (M <= a few hundred rows, K = head_dim or a
 * chunk of keys, N = a chunk of keys or head_dim), so the product is done in
 * one pass: for each 32-column panel of B (it stays in L1 while all row
 * strips use it), an 8 x 32 block of C is kept in registers (16 vectors of
 * 16 floats) while k runs over K.  Written with GCC vector extensions and
 * compiled for AVX-512, AVX2 and the baseline, picked at load time.
 */
#include "config.h"

#include <string.h>

#include "internal.h"

/* The vector type is passed between inline helpers only; the ABI note GCC
 * gives for the baseline clone does not concern any external interface. */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float v16 __attribute__((vector_size(64), aligned(4)));

#define MR 8
#define NR 32

#define GEMM_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

static inline v16 load16(const float *p) {
  v16 v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline void store16(float *p, v16 v) { memcpy(p, &v, sizeof v); }

GEMM_CLONES void bsa__gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                           const float *B, int64_t ldb, float *C, int64_t ldc, int accumulate) {
  for (int64_t j = 0; j < N; j += NR) {
    int64_t i = 0;
    for (; i + MR <= M; i += MR) {
      /* Sixteen named accumulators: an array here ends up in memory. */
      float *c = C + i * ldc + j;
      v16 c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0}, c30 = {0}, c31 = {0},
          c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0}, c60 = {0}, c61 = {0}, c70 = {0}, c71 = {0};
      const float *a = A + i * lda;
      const float *b = B + j;
      for (int64_t k = 0; k < K; k++) {
        const v16 b0 = load16(b + k * ldb), b1 = load16(b + k * ldb + 16);
#define ROW(r)                       \
  {                                  \
    const float av = a[r * lda + k]; \
    c##r##0 += av * b0;              \
    c##r##1 += av * b1;              \
  }
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7)
      }
#define OUT(r)                    \
  {                               \
    float *cr = c + r * ldc;      \
    if (accumulate) {             \
      c##r##0 += load16(cr);      \
      c##r##1 += load16(cr + 16); \
    }                             \
    store16(cr, c##r##0);         \
    store16(cr + 16, c##r##1);    \
  }
      OUT(0) OUT(1) OUT(2) OUT(3) OUT(4) OUT(5) OUT(6) OUT(7)
    }
    for (; i + 4 <= M; i += 4) { /* four remaining rows */
      float *c = C + i * ldc + j;
      v16 c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0}, c30 = {0}, c31 = {0};
      const float *a = A + i * lda;
      const float *b = B + j;
      for (int64_t k = 0; k < K; k++) {
        const v16 b0 = load16(b + k * ldb), b1 = load16(b + k * ldb + 16);
        ROW(0) ROW(1) ROW(2) ROW(3)
      }
      OUT(0) OUT(1) OUT(2) OUT(3)
    }
    for (; i < M; i++) { /* remaining rows one at a time */
      v16 c0 = {0}, c1 = {0};
      if (accumulate) {
        c0 = load16(C + i * ldc + j);
        c1 = load16(C + i * ldc + j + 16);
      }
      const float *a = A + i * lda;
      for (int64_t k = 0; k < K; k++) {
        c0 += a[k] * load16(B + k * ldb + j);
        c1 += a[k] * load16(B + k * ldb + j + 16);
      }
      store16(C + i * ldc + j, c0);
      store16(C + i * ldc + j + 16, c1);
    }
  }
}
#undef ROW
#undef OUT
