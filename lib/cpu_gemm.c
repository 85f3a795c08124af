/*
 * lib/cpu_gemm.c - the two small matrix products of the CPU backend.
 *
 * The backend computes scores transposed, S^T = K Q^T (keys down, query
 * rows across), so that both products read K and V rows where they lie,
 * through one pointer per key: a chunk of keys gathered from scattered
 * segments costs a pointer each, never a copy.
 *
 *   bsa__gemm_arows:    C[M, N]  = A[M, K] B[K, N], row i of A at arow[i]
 *                       (S^T: A = key rows, B = Q^T [D, query rows]);
 *   bsa__gemm_at_brows: C[M, N] (+)= A[M, K] B[K, N], A given transposed
 *                       (At [K, M], element (i, k) at At[k * ldat + i]) and
 *                       row k of B at brow[k]  (O += P V: At = the
 *                       probabilities P^T as the softmax leaves them,
 *                       B = value rows).
 *
 * Both keep a block of C in registers (8 rows x 32 columns = 16 vectors of
 * 16 floats) while k runs over K, for each 32-column panel of B, which
 * stays in L1 while the row strips use it.  The first pass over the rows
 * reached through pointers prefetches them ahead, since they are scattered
 * over segments and, for sparse plans, often cold: S^T's first panel brings
 * the next strip's key rows and this strip's value rows into L2, a line per
 * step of k, and P V's first strip brings a panel's value rows into L1 eight
 * keys ahead (docs/PERF.md).  Written with GCC vector extensions and
 * compiled for AVX-512, AVX2 and the baseline, picked at load time.
 */
#include "config.h"

#include <string.h>

#include "internal.h"

/* The vector type is passed between inline helpers only; the ABI note GCC
 * gives for the baseline clone does not concern any external interface. */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float v16 __attribute__((vector_size(64), aligned(4)));

#define GEMM_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

static inline v16 load16(const float *p) {
  v16 v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline void store16(float *p, v16 v) { memcpy(p, &v, sizeof v); }

/* Eight rows of sixteen or thirty-two accumulators: named variables, since
 * an array of vectors ends up in memory. */
#define DECL2(r) v16 c##r##0 = {0}, c##r##1 = {0};
#define STORE2(r, acc)            \
  {                               \
    float *cr = c + (r)*ldc;      \
    if (acc) {                    \
      c##r##0 += load16(cr);      \
      c##r##1 += load16(cr + 16); \
    }                             \
    store16(cr, c##r##0);         \
    store16(cr + 16, c##r##1);    \
  }

/* The 8 x 32 block of C: its accumulators, and their store (adding C's
 * old values when acc). */
#define DECL_BLOCK \
  DECL2(0);        \
  DECL2(1);        \
  DECL2(2);        \
  DECL2(3);        \
  DECL2(4);        \
  DECL2(5);        \
  DECL2(6);        \
  DECL2(7)
#define STORE_BLOCK(acc) \
  STORE2(0, acc);        \
  STORE2(1, acc);        \
  STORE2(2, acc);        \
  STORE2(3, acc);        \
  STORE2(4, acc);        \
  STORE2(5, acc);        \
  STORE2(6, acc);        \
  STORE2(7, acc)

/* Row r of the block gains A value AV times the two B vectors b0, b1. */
#define FMA2(r, AV)        \
  {                        \
    const float av = (AV); \
    c##r##0 += av * b0;    \
    c##r##1 += av * b1;    \
  }

/* One step of k for an 8-row strip of S^T, over a 32-column panel
 * (ARROWS_STEP32) or the last 16 columns (ARROWS_STEP16). */
#define ARROWS_STEP32                                                  \
  {                                                                    \
    const v16 b0 = load16(b + k * ldb), b1 = load16(b + k * ldb + 16); \
    FMA2(0, a0[k]);                                                    \
    FMA2(1, a1[k]);                                                    \
    FMA2(2, a2[k]);                                                    \
    FMA2(3, a3[k]);                                                    \
    FMA2(4, a4[k]);                                                    \
    FMA2(5, a5[k]);                                                    \
    FMA2(6, a6[k]);                                                    \
    FMA2(7, a7[k]);                                                    \
  }
#define ARROWS_STEP16                   \
  {                                     \
    const v16 b0 = load16(b + k * ldb); \
    c0 += a0[k] * b0;                   \
    c1 += a1[k] * b0;                   \
    c2 += a2[k] * b0;                   \
    c3 += a3[k] * b0;                   \
    c4 += a4[k] * b0;                   \
    c5 += a5[k] * b0;                   \
    c6 += a6[k] * b0;                   \
    c7 += a7[k] * b0;                   \
  }
/* The first panel's k loop also prefetches pr[k % 16], a line per 16 k.
 * The prefetches stay in the loops themselves: GCC 12 at -O3 finds a
 * static helper whose only effect is __builtin_prefetch pure and drops the
 * calls. */
#define ARROWS_PF __builtin_prefetch(pr[k & 15] + (k >> 4) * 16, 0, 2)

GEMM_CLONES void bsa__gemm_arows(int64_t M, int64_t N, int64_t K, const float *const *arow,
                                 const float *B, int64_t ldb, float *C, int64_t ldc,
                                 const float *const *pfrow, int64_t npf) {
  /* The first panel reads the key rows first, and they lie scattered over
   * segments (for sparse plans, often cold): while a strip computes it
   * brings the next strip's key rows (pr[0..8)) and pfrow's rows of its own
   * keys (pr[8..16), the value rows P V reads next) into L2, one line per k,
   * so that the requests are spread over the strip instead of issued at
   * once.  Rows past the end repeat the strip's first row.  With K = D the
   * lines reach float 16 * floor(D / 16) of each row at least: all of a key
   * row when D is a multiple of 16. */
  const float *pr[16];
/* The k loop of one strip: the first panel (j == 0) also sets pr and
 * prefetches. */
#define ARROWS_LOOP(STEP)                                   \
  if (j == 0) {                                             \
    for (int r = 0; r < 8; r++) {                           \
      pr[r] = i + 8 + r < M ? arow[i + 8 + r] : a0;         \
      pr[8 + r] = pfrow && i + r < npf ? pfrow[i + r] : a0; \
    }                                                       \
    for (int64_t k = 0; k < K; k++) {                       \
      ARROWS_PF;                                            \
      STEP                                                  \
    }                                                       \
  } else {                                                  \
    for (int64_t k = 0; k < K; k++) STEP                    \
  }
  int64_t j = 0;
  for (; j + 32 <= N; j += 32) {
    for (int64_t i = 0; i < M; i += 8) {
      const float *a0 = arow[i], *a1 = arow[i + 1], *a2 = arow[i + 2], *a3 = arow[i + 3],
                  *a4 = arow[i + 4], *a5 = arow[i + 5], *a6 = arow[i + 6], *a7 = arow[i + 7];
      DECL_BLOCK;
      const float *b = B + j;
      ARROWS_LOOP(ARROWS_STEP32)
      float *c = C + i * ldc + j;
      STORE_BLOCK(0);
    }
  }
  if (j < N) { /* one last panel of 16 columns */
    for (int64_t i = 0; i < M; i += 8) {
      const float *a0 = arow[i], *a1 = arow[i + 1], *a2 = arow[i + 2], *a3 = arow[i + 3],
                  *a4 = arow[i + 4], *a5 = arow[i + 5], *a6 = arow[i + 6], *a7 = arow[i + 7];
      v16 c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0}, c4 = {0}, c5 = {0}, c6 = {0}, c7 = {0};
      const float *b = B + j;
      ARROWS_LOOP(ARROWS_STEP16) /* j == 0: the only panel (N = 16) */
      float *c = C + i * ldc + j;
      store16(c, c0);
      store16(c + ldc, c1);
      store16(c + 2 * ldc, c2);
      store16(c + 3 * ldc, c3);
      store16(c + 4 * ldc, c4);
      store16(c + 5 * ldc, c5);
      store16(c + 6 * ldc, c6);
      store16(c + 7 * ldc, c7);
    }
  }
#undef ARROWS_LOOP
}
#undef ARROWS_STEP32
#undef ARROWS_STEP16
#undef ARROWS_PF

GEMM_CLONES void bsa__gemm_at_brows(int64_t M, int64_t N, int64_t K, const float *At, int64_t ldat,
                                    const float *const *brow, float *C, int64_t ldc,
                                    int accumulate) {
  for (int64_t j = 0; j < N; j += 32) {
    for (int64_t i = 0; i < M; i += 8) {
      DECL_BLOCK;
      const float *a = At + i;
      for (int64_t k = 0; k < K; k++) {
        const float *bk = brow[k] + j;
        if (i == 0 && k + 8 < K) { /* the first strip fetches a panel's rows ahead */
          __builtin_prefetch(brow[k + 8] + j);
          __builtin_prefetch(brow[k + 8] + j + 16);
        }
        const v16 b0 = load16(bk), b1 = load16(bk + 16);
        const float *ak = a + k * ldat;
        FMA2(0, ak[0]);
        FMA2(1, ak[1]);
        FMA2(2, ak[2]);
        FMA2(3, ak[3]);
        FMA2(4, ak[4]);
        FMA2(5, ak[5]);
        FMA2(6, ak[6]);
        FMA2(7, ak[7]);
      }
      float *c = C + i * ldc + j;
      STORE_BLOCK(accumulate);
    }
  }
}
#undef DECL2
#undef STORE2
#undef FMA2
#undef DECL_BLOCK
#undef STORE_BLOCK

typedef int32_t vi16 __attribute__((vector_size(64)));

/* One stage of the 16 x 16 transpose: rows i and i + b (i & b == 0)
 * exchange their blocks of b lanes. */
#define TSTAGE(b, LO, HI)                             \
  for (int i = 0; i < 16; i++)                        \
    if (!(i & (b))) {                                 \
      const v16 x = t[i], y = t[i + (b)];             \
      t[i] = __builtin_shuffle(x, y, (vi16)LO);       \
      t[i + (b)] = __builtin_shuffle(x, y, (vi16)HI); \
    }

GEMM_CLONES void bsa__transpose_scaled(int64_t R, int64_t D, const float *Q, int64_t ldq,
                                       float scale, float *Qt, int64_t ldt) {
  const int64_t R16 = (R + 15) & ~(int64_t)15, D16 = D & ~(int64_t)15;
  for (int64_t r0 = 0; r0 < R16; r0 += 16) {
    for (int64_t d0 = 0; d0 < D16; d0 += 16) {
      v16 t[16];
      for (int i = 0; i < 16; i++) {
        if (r0 + i < R) {
          t[i] = load16(Q + (r0 + i) * ldq + d0) * scale;
        } else {
          const v16 z = {0};
          t[i] = z;
        }
      }
      /* Lane j of the first row takes x[j] where (j & b) == 0, else
       * y[j - b]; of the second, x[j + b] or y[j]. */
      TSTAGE(8, ((vi16){0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23}),
             ((vi16){8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}))
      TSTAGE(4, ((vi16){0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27}),
             ((vi16){4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31}))
      TSTAGE(2, ((vi16){0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29}),
             ((vi16){2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31}))
      TSTAGE(1, ((vi16){0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}),
             ((vi16){1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}))
      for (int c = 0; c < 16; c++) store16(Qt + (d0 + c) * ldt + r0, t[c]);
    }
    for (int64_t d = D16; d < D; d++) /* head dims that are not a multiple of 16 */
      for (int64_t i = 0; i < 16; i++)
        Qt[d * ldt + r0 + i] = r0 + i < R ? Q[(r0 + i) * ldq + d] * scale : 0.0f;
  }
}
#undef TSTAGE
