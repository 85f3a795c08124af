/*
 * tests/check_attention.c - libbsa CPU backend against a naive double
 * reference (tests/attn_ref.h) over a grid of shapes and features, plus
 * every validation error.
 *
 * Grid: BSR R, C in {1, 4, 16, 64} x M, N in {1, 63, 64, 257, 1000}; every
 * case also draws heads (1/1, 4/1, 4/2, 16/4), head_dim (32, 64, 128, 256),
 * causal, soft cap, RoPE / ALiBi, per-element masks, per-kv-head patterns,
 * layout and dtype from its index, so each value occurs many times.  Large
 * M x N cases use small heads and head_dim to keep the reference cheap.
 * Variable-block and dense cases cover zero-size blocks and empty rows.
 * Inputs are fresh random normals per case; outputs are poisoned (NaN).
 */
#include "config.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_ref.h"
#include "bsa.h"
#include "internal.h"

static const int64_t RC_VALUES[4] = {1, 4, 16, 64};
static const int64_t MN_VALUES[5] = {1, 63, 64, 257, 1000};
static const int HEADS[4][2] = {{1, 1}, {4, 1}, {4, 2}, {16, 4}};
static const int DIMS[4] = {32, 64, 128, 256};

typedef enum { KIND_DENSE, KIND_BSR, KIND_VAR } kind_t;

typedef struct tcase {
  kind_t kind;
  int64_t M, N, R, C;
  int Hq, Hkv, D;
  int causal;
  float cap;
  bsa_pos_encoding pos;
  int elemask, per_head;
  bsa_layout layout;
  bsa_dtype dtype, odtype;
  int want_lse;
  double density;
  int force_empty_row; /* BSR/var: block row 0 keeps nothing */
  int zero_sizes;      /* var: allow zero-size blocks */
  int64_t blocks;      /* var: MB = NB = blocks (0: drawn from 1..8) */
  int threads;         /* the context's threads (0: 2) */
} tcase;

static uint64_t mix(uint64_t x) {
  uint64_t s = x * 0x9e3779b97f4a7c15ull + 12345;
  return ref_rand_u64(&s);
}

static double tolerance(bsa_dtype odt) {
  return odt == BSA_DTYPE_F32 ? 1e-5 : odt == BSA_DTYPE_F16 ? 2e-3 : 1e-2;
}

/* Fills a tensor of n elements in dtype with N(0,1) values, and returns the
 * same values as float (after rounding to dtype). */
static void *random_tensor(bsa_dtype dt, size_t n, uint64_t *rng, float **as_float) {
  float *f = malloc(sizeof(float) * n);
  for (size_t i = 0; i < n; i++) f[i] = (float)ref_rand_normal(rng);
  void *x = malloc(n * bsa_dtype_size(dt));
  bsa_convert(x, dt, f, BSA_DTYPE_F32, n);
  bsa_convert(f, BSA_DTYPE_F32, x, dt, n);
  *as_float = f;
  return x;
}

/* Random partition of total into nb parts; zero-size parts when allowed. */
static void random_partition(int32_t *sz, int64_t nb, int64_t total, int allow_zero,
                             uint64_t *rng) {
  if (!allow_zero && nb > total) allow_zero = 1;
  int64_t *cuts = malloc(sizeof(int64_t) * (size_t)(nb + 1));
  cuts[0] = 0;
  cuts[nb] = total;
  for (int64_t i = 1; i < nb; i++) {
    if (allow_zero)
      cuts[i] = (int64_t)(ref_rand_unit(rng) * (double)(total + 1));
    else
      cuts[i] = 1 + (int64_t)(ref_rand_unit(rng) * (double)(total - 1));
    if (cuts[i] > total) cuts[i] = total;
  }
  /* sort the inner cuts */
  for (int64_t i = 1; i < nb; i++)
    for (int64_t k = i; k > 1 && cuts[k] < cuts[k - 1]; k--) {
      int64_t t = cuts[k];
      cuts[k] = cuts[k - 1];
      cuts[k - 1] = t;
    }
  if (!allow_zero) /* make the cuts strictly increasing */
    for (int64_t i = 1; i < nb; i++)
      if (cuts[i] <= cuts[i - 1]) cuts[i] = cuts[i - 1] + 1;
  for (int64_t i = 0; i < nb; i++) sz[i] = (int32_t)(cuts[i + 1] - cuts[i]);
  free(cuts);
}

/* Sums of the squared error of o against ref and of ref squared, over n
 * values (their ratio's root is the relative L2 error). */
static void err_sums(const float *o, const double *ref, size_t n, double *num, double *den) {
  *num = *den = 0;
  for (size_t i = 0; i < n; i++) {
    const double d = (double)o[i] - ref[i];
    *num += d * d;
    *den += ref[i] * ref[i];
  }
}

static void run_case(const tcase *c, uint64_t seed) {
  uint64_t rng = seed;
  bsa_attn_params p;
  memset(&p, 0, sizeof p);
  p.num_qo_heads = c->Hq;
  p.num_kv_heads = c->Hkv;
  p.head_dim = c->D;
  p.qo_len = c->M;
  p.kv_len = c->N;
  p.q_dtype = p.kv_dtype = c->dtype;
  p.o_dtype = c->odtype;
  p.layout = c->layout;
  p.causal = c->causal;
  p.logits_soft_cap = c->cap;
  p.pos_encoding = c->pos;
  if (c->pos == BSA_POS_ROPE_LLAMA && (seed & 1)) {
    p.rope_theta = 5e5f;
    p.rope_scale = 2.0f;
  }
  if (seed & 2) p.sm_scale = 0.3f / sqrtf((float)c->D) * 3.0f;

  const size_t nq = (size_t)(c->M * c->Hq * c->D), nkv = (size_t)(c->N * c->Hkv * c->D);
  float *qf, *kf, *vf;
  void *q = random_tensor(c->dtype, nq, &rng, &qf);
  void *k = random_tensor(c->dtype, nkv, &rng, &kf);
  void *v = random_tensor(c->dtype, nkv, &rng, &vf);

  bsa_ctx *ctx;
  bsa_ctx_options opt = {0};
  opt.num_threads = c->threads ? c->threads : 2;
  ck_assert_int_eq(bsa_ctx_create(&opt, &ctx), BSA_OK);
  bsa_plan *plan = NULL;
  uint8_t *emask = NULL;
  int32_t *indptr = NULL, *indices = NULL, *rsz = NULL, *csz = NULL;
  uint8_t *bmask = NULL, *map = NULL;
  bsa_status st = BSA_OK;

  if (c->kind == KIND_DENSE) {
    st = bsa_plan_create_dense(ctx, &p, &plan);
  } else if (c->kind == KIND_BSR) {
    const int64_t MB = (c->M + c->R - 1) / c->R, NB = (c->N + c->C - 1) / c->C;
    const int64_t heads = c->per_head ? c->Hkv : 1;
    indptr = malloc(sizeof(int32_t) * (size_t)(heads * (MB + 1)));
    indices = malloc(sizeof(int32_t) * (size_t)(heads * MB * NB + 1));
    int64_t nnz = 0;
    for (int64_t h = 0; h < heads; h++) {
      indptr[h * (MB + 1)] = (int32_t)nnz;
      for (int64_t i = 0; i < MB; i++) {
        /* Columns in random order: the plan must not assume sorted input. */
        int64_t start = nnz;
        if (!(c->force_empty_row && i == 0))
          for (int64_t jj = 0; jj < NB; jj++)
            if (ref_rand_unit(&rng) < c->density) indices[nnz++] = (int32_t)jj;
        for (int64_t a = nnz - 1; a > start; a--) {
          int64_t b = start + (int64_t)(ref_rand_u64(&rng) % (uint64_t)(a - start + 1));
          int32_t t = indices[a];
          indices[a] = indices[b];
          indices[b] = t;
        }
        indptr[h * (MB + 1) + i + 1] = (int32_t)nnz;
      }
    }
    if (c->elemask) {
      bmask = malloc((size_t)(nnz * c->R * c->C + 1));
      for (int64_t e = 0; e < nnz * c->R * c->C; e++) bmask[e] = ref_rand_unit(&rng) < 0.7;
    }
    bsa_bsr_desc d = {c->R, c->C, indptr, indices, bmask, c->per_head};
    emask = ref_mask_from_bsr(&p, &d);
    st = bsa_plan_create_bsr(ctx, &p, &d, &plan);
  } else {
    const int64_t MB = c->blocks ? c->blocks : 1 + (int64_t)(ref_rand_u64(&rng) % 8);
    const int64_t NB = c->blocks ? c->blocks : 1 + (int64_t)(ref_rand_u64(&rng) % 8);
    rsz = malloc(sizeof(int32_t) * (size_t)(c->Hkv * MB));
    csz = malloc(sizeof(int32_t) * (size_t)(c->Hkv * NB));
    map = malloc((size_t)(c->Hkv * MB * NB));
    for (int h = 0; h < c->Hkv; h++) {
      random_partition(rsz + h * MB, MB, c->M, c->zero_sizes, &rng);
      random_partition(csz + h * NB, NB, c->N, c->zero_sizes, &rng);
      for (int64_t i = 0; i < MB; i++)
        for (int64_t j = 0; j < NB; j++)
          map[(h * MB + i) * NB + j] =
              (c->force_empty_row && i == 0) ? 0 : ref_rand_unit(&rng) < c->density;
    }
    bsa_var_desc d = {MB, NB, map, rsz, csz};
    emask = ref_mask_from_var(&p, &d);
    st = bsa_plan_create_var(ctx, &p, &d, &plan);
  }
  ck_assert_msg(st == BSA_OK, "plan failed: %s", bsa_ctx_last_error(ctx));

  const size_t osz = bsa_dtype_size(c->odtype);
  void *o = malloc(nq * osz);
  float *lse = malloc(sizeof(float) * (size_t)(c->M * c->Hq));
  memset(o, 0xff, nq * osz); /* NaN in every dtype */
  memset(lse, 0xff, sizeof(float) * (size_t)(c->M * c->Hq));
  st = bsa_plan_run(plan, q, k, v, o, c->want_lse ? lse : NULL);
  ck_assert_msg(st == BSA_OK, "run failed: %s", bsa_ctx_last_error(ctx));

  double *oref = malloc(sizeof(double) * nq);
  double *lref = malloc(sizeof(double) * (size_t)(c->M * c->Hq));
  ref_attention(&p, qf, kf, vf, emask, oref, lref);
  float *of = malloc(sizeof(float) * nq);
  bsa_convert(of, BSA_DTYPE_F32, o, c->odtype, nq);
  /* Plain loops with one assertion after them: Check records every
   * assertion it passes, which is slow inside element loops. */
  double num, den;
  size_t bad = nq;
  for (size_t i = 0; i < nq && bad == nq; i++)
    if (!isfinite(of[i])) bad = i;
  ck_assert_msg(bad == nq, "o[%zu] = %g not written or not finite", bad,
                bad < nq ? (double)of[bad] : 0.0);
  err_sums(of, oref, nq, &num, &den);
  double tol = tolerance(c->odtype);
  if (den > 0)
    ck_assert_msg(sqrt(num / den) < tol, "rel L2 = %.3g >= %.1g (M=%lld N=%lld D=%d)",
                  sqrt(num / den), tol, (long long)c->M, (long long)c->N, c->D);
  else
    ck_assert_msg(num == 0, "all rows empty but output is not zero");
  /* Empty rows: exactly zero output and -inf LSE; others: LSE close. */
  for (int64_t t = 0; t < c->M; t++)
    for (int h = 0; h < c->Hq; h++) {
      double lr = lref[t * c->Hq + h];
      if (lr == -INFINITY) {
        int64_t ob =
            c->layout == BSA_LAYOUT_NHD ? (t * c->Hq + h) * c->D : ((int64_t)h * c->M + t) * c->D;
        int nonzero = 0;
        for (int d = 0; d < c->D; d++) nonzero += of[ob + d] != 0.0f;
        if (nonzero) ck_abort_msg("row %lld head %d sees no key but o != 0", (long long)t, h);
      }
      if (!c->want_lse) continue;
      float lv = lse[t * c->Hq + h];
      if (lr == -INFINITY) {
        if (lv != -INFINITY)
          ck_abort_msg("lse[%lld,%d] = %g, want -inf", (long long)t, h, (double)lv);
      } else if (!(fabs(lv - lr) < 1e-4 * (1 + fabs(lr)))) {
        ck_abort_msg("lse[%lld,%d] = %.7g, want %.7g", (long long)t, h, (double)lv, lr);
      }
    }

  /* A second run on the same plan with fresh inputs (plan reuse). */
  if ((seed % 5) == 0) {
    free(q);
    free(qf);
    q = random_tensor(c->dtype, nq, &rng, &qf);
    memset(o, 0xff, nq * osz);
    ck_assert_int_eq(bsa_plan_run(plan, q, k, v, o, NULL), BSA_OK);
    ref_attention(&p, qf, kf, vf, emask, oref, lref);
    bsa_convert(of, BSA_DTYPE_F32, o, c->odtype, nq);
    err_sums(of, oref, nq, &num, &den);
    if (den > 0) ck_assert_msg(sqrt(num / den) < tol, "reuse: rel L2 = %.3g", sqrt(num / den));
  }

  bsa_plan_destroy(plan);
  bsa_ctx_destroy(ctx);
  free(q), free(k), free(v), free(qf), free(kf), free(vf), free(o), free(of), free(lse);
  free(oref), free(lref), free(emask), free(indptr), free(indices), free(bmask), free(rsz);
  free(csz), free(map);
}

/* Features of case i, spread so that every value occurs with every other
 * often over the grid. */
static void draw_features(tcase *c, uint64_t i) {
  uint64_t h = mix(i);
  int hi = (int)(h % 4), di = (int)((h >> 8) % 4);
  c->Hq = HEADS[hi][0];
  c->Hkv = HEADS[hi][1];
  c->D = DIMS[di];
  if (c->M * c->N > 20000) { /* keep the double reference cheap */
    if (c->Hq > 4) c->Hq = 4, c->Hkv = 2;
    if (c->D > 64) c->D = 64;
  }
  c->causal = (int)((h >> 16) & 1);
  c->cap = ((h >> 17) % 3 == 0) ? 5.0f : 0.0f;
  int pos = (int)((h >> 20) % 4);
  c->pos = pos == 1 ? BSA_POS_ROPE_LLAMA : pos == 2 ? BSA_POS_ALIBI : BSA_POS_NONE;
  c->elemask = (int)((h >> 24) & 1);
  c->per_head = (int)((h >> 25) & 1);
  c->layout = (h >> 26) & 1 ? BSA_LAYOUT_HND : BSA_LAYOUT_NHD;
  int dt = (int)((h >> 28) % 3);
  c->dtype = dt == 0 ? BSA_DTYPE_F32 : dt == 1 ? BSA_DTYPE_F16 : BSA_DTYPE_BF16;
  int odt = (int)((h >> 32) % 4);
  c->odtype = odt == 3 ? BSA_DTYPE_F32 : c->dtype;
  c->want_lse = (int)((h >> 34) % 4 != 0);
  c->density = ((h >> 36) % 2) ? 0.5 : 0.2;
  c->force_empty_row = (int)((h >> 38) % 4 == 0);
  c->zero_sizes = (int)((h >> 40) & 1);
}

/* 400 BSR cases: all (R, C) x (M, N) pairs. */
START_TEST(test_bsr_grid) {
  int rc = _i / 25, mn = _i % 25;
  tcase c;
  memset(&c, 0, sizeof c);
  c.kind = KIND_BSR;
  c.R = RC_VALUES[rc / 4];
  c.C = RC_VALUES[rc % 4];
  c.M = MN_VALUES[mn / 5];
  c.N = MN_VALUES[mn % 5];
  draw_features(&c, (uint64_t)_i);
  run_case(&c, mix((uint64_t)_i + 1000));
}
END_TEST

/* Variable blocks over the (M, N) grid, four draws each. */
START_TEST(test_var_grid) {
  int mn = _i % 25;
  tcase c;
  memset(&c, 0, sizeof c);
  c.kind = KIND_VAR;
  c.M = MN_VALUES[mn / 5];
  c.N = MN_VALUES[mn % 5];
  draw_features(&c, (uint64_t)_i + 5000);
  run_case(&c, mix((uint64_t)_i + 7000));
}
END_TEST

/* Dense over the (M, N) grid with every feature. */
START_TEST(test_dense_grid) {
  int mn = _i % 25;
  tcase c;
  memset(&c, 0, sizeof c);
  c.kind = KIND_DENSE;
  c.M = MN_VALUES[mn / 5];
  c.N = MN_VALUES[mn % 5];
  draw_features(&c, (uint64_t)_i + 9000);
  run_case(&c, mix((uint64_t)_i + 11000));
}
END_TEST

/* Variable-block maps large enough (Hkv x 200 x 200 >= 2^16 entries) that
 * plans without causal clipping build their work list on several threads
 * (one range of kv heads each: with 3 threads, 2 or 3 ranges, uneven for 4
 * heads); case 3 is causal, built on one thread. */
START_TEST(test_var_threaded_build) {
  tcase c;
  memset(&c, 0, sizeof c);
  c.kind = KIND_VAR;
  c.M = c.N = 1000;
  draw_features(&c, (uint64_t)_i + 13000);
  c.Hq = 4;
  c.Hkv = _i % 2 ? 4 : 2;
  c.blocks = 200;
  c.threads = 3;
  c.causal = _i == 3;
  run_case(&c, mix((uint64_t)_i + 15000));
}
END_TEST

/* Each head dim, dtype and layout at a mid-size shape with GQA 16/4. */
/* Case i of a 24-case sweep: head dim dims[i % 4], dtype (i / 4) % 3 (the
 * output in the same dtype), layout (i / 12) % 2, with LSE. */
static tcase sweep_case(kind_t kind, int64_t M, int64_t N, int Hq, int Hkv, const int *dims,
                        int i) {
  tcase c;
  memset(&c, 0, sizeof c);
  c.kind = kind;
  c.M = M;
  c.N = N;
  c.Hq = Hq;
  c.Hkv = Hkv;
  c.D = dims[i % 4];
  c.dtype = (bsa_dtype)((i / 4) % 3);
  c.odtype = c.dtype;
  c.layout = (bsa_layout)((i / 12) % 2);
  c.want_lse = 1;
  return c;
}

START_TEST(test_dims_dtypes_layouts) {
  tcase c = sweep_case(KIND_BSR, 100, 130, 16, 4, DIMS, _i);
  c.R = 16;
  c.C = 16;
  c.density = 0.4;
  c.causal = 1;
  run_case(&c, mix((uint64_t)_i + 13000));
}
END_TEST

/* CPU head dims that are not multiples of 16 or 32: the Q^T transpose
 * runs its scalar tail and V is staged padded to 32 columns.  Variable
 * blocks, so chunks gather many short pieces; every layout and dtype, with
 * RoPE (even dims) or ALiBi, causal, a soft cap and a pass over the KC = 512
 * key chunk edge (N = 700). */
START_TEST(test_odd_head_dims) {
  static const int ODD_DIMS[4] = {8, 24, 40, 100};
  tcase c = sweep_case(KIND_VAR, 90, 700, 4, 2, ODD_DIMS, _i);
  c.pos = _i % 2 ? BSA_POS_ROPE_LLAMA : BSA_POS_ALIBI;
  c.cap = _i % 3 == 0 ? 5.0f : 0.0f;
  c.causal = 1;
  c.density = 0.5;
  c.blocks = 20;
  run_case(&c, mix((uint64_t)_i + 14000));
}
END_TEST

/* Outputs of 4 MiB or more are written with non-temporal stores, and the
 * grid's outputs are far smaller: BSA_CPU_STREAM_BYTES=0 streams every
 * output here.  Every dtype and layout (the output's dtype differing from
 * the input's in half the cases), head dims whose rows are not a multiple
 * of 16 bytes or not 16-byte aligned (f16/bf16 D = 100: 200-byte rows, the
 * memcpy fallback) next to ones that are. */
START_TEST(test_streamed_output) {
  static const int STREAM_DIMS[4] = {8, 100, 64, 128};
  tcase c = sweep_case(KIND_VAR, 90, 300, 4, 2, STREAM_DIMS, _i);
  if (_i % 2) c.odtype = c.dtype == BSA_DTYPE_F32 ? BSA_DTYPE_BF16 : BSA_DTYPE_F32;
  c.density = 0.5;
  c.blocks = 12;
  c.causal = _i % 3 == 0;
  ck_assert_int_eq(setenv("BSA_CPU_STREAM_BYTES", "0", 1), 0);
  run_case(&c, mix((uint64_t)_i + 16000));
  unsetenv("BSA_CPU_STREAM_BYTES");
}
END_TEST

/* Float32 HND V is read in place only when it is 64-byte aligned, else
 * staged; the choice is made per run.  One plan runs on a 64-byte aligned V
 * and then on a copy 16 bytes off (staged, with the staging buffer made on
 * that run), then aligned again: all three against the reference, and the
 * two paths must agree exactly (same products on the same values). */
START_TEST(test_v_alignment_per_run) {
  uint64_t rng = mix(15000 + (uint64_t)_i);
  bsa_attn_params p = {0};
  p.num_qo_heads = 4;
  p.num_kv_heads = 2;
  p.head_dim = 64;
  p.qo_len = 150;
  p.kv_len = 300;
  p.layout = BSA_LAYOUT_HND;
  p.causal = _i & 1;
  const size_t nq = 150 * 4 * 64, nkv = 300 * 2 * 64;
  float *qf, *kf, *vf;
  float *q = random_tensor(BSA_DTYPE_F32, nq, &rng, &qf);
  float *k = random_tensor(BSA_DTYPE_F32, nkv, &rng, &kf);
  float *v = random_tensor(BSA_DTYPE_F32, nkv, &rng, &vf);
  float *buf = NULL;
  ck_assert_int_eq(posix_memalign((void **)&buf, 64, sizeof(float) * (nkv + 16)), 0);
  float *v_al = buf, *v_off = buf + 4; /* 64-byte aligned, and 16 bytes past */
  bsa_ctx *ctx;
  ck_assert_int_eq(bsa_ctx_create(NULL, &ctx), BSA_OK);
  bsa_plan *plan;
  ck_assert_int_eq(bsa_plan_create_dense(ctx, &p, &plan), BSA_OK);
  double *oref = malloc(sizeof(double) * nq), *lref = malloc(sizeof(double) * 150 * 4);
  ref_attention(&p, qf, kf, vf, NULL, oref, lref);
  float *o[3];
  for (int r = 0; r < 3; r++) {
    float *vr = r == 1 ? v_off : v_al;
    memmove(vr, v, sizeof(float) * nkv);
    o[r] = malloc(sizeof(float) * nq);
    memset(o[r], 0xff, sizeof(float) * nq);
    ck_assert_int_eq(bsa_plan_run(plan, q, k, vr, o[r], NULL), BSA_OK);
    double num, den;
    err_sums(o[r], oref, nq, &num, &den);
    ck_assert_msg(sqrt(num / den) < 1e-5, "run %d: rel L2 = %.3g", r, sqrt(num / den));
  }
  ck_assert_msg(memcmp(o[0], o[1], sizeof(float) * nq) == 0, "staged and in-place V differ");
  ck_assert_msg(memcmp(o[0], o[2], sizeof(float) * nq) == 0, "in-place V differs between runs");
  for (int r = 0; r < 3; r++) free(o[r]);
  free(oref), free(lref), free(buf), free(q), free(k), free(v), free(qf), free(kf), free(vf);
  bsa_plan_destroy(plan);
  bsa_ctx_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------ unit facts */

START_TEST(test_half_conversions) {
  /* Exactly representable values round-trip; rounding is to nearest even. */
  const float exact[] = {0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.960464477539063e-08f};
  for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++) {
    ck_assert_float_eq(bsa_f16_to_f32(bsa_f32_to_f16(exact[i])), exact[i]);
    ck_assert_float_eq(bsa_bf16_to_f32(bsa_f32_to_bf16(exact[i] == 65504.0f ? 65536.0f : exact[i])),
                       exact[i] == 65504.0f ? 65536.0f : exact[i]);
  }
  ck_assert_uint_eq(bsa_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie -> even */
  ck_assert_uint_eq(bsa_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02); /* tie -> even */
  ck_assert_uint_eq(bsa_f32_to_f16(1e6f), 0x7c00);               /* overflow -> inf */
  ck_assert(isnan(bsa_f16_to_f32(bsa_f32_to_f16(NAN))));
  ck_assert_uint_eq(bsa_f32_to_bf16(1.0f + 1.0f / 256), 0x3f80); /* tie -> even */
  uint64_t rng = 42;
  for (int i = 0; i < 10000; i++) {
    float x = (float)(ref_rand_normal(&rng) * 100.0);
    float h = bsa_f16_to_f32(bsa_f32_to_f16(x));
    ck_assert(fabsf(h - x) <= fabsf(x) * (1.0f / 2048) + 6e-8f);
    float b = bsa_bf16_to_f32(bsa_f32_to_bf16(x));
    ck_assert(fabsf(b - x) <= fabsf(x) * (1.0f / 256));
  }
}
END_TEST

START_TEST(test_alibi_slopes) {
  ck_assert_float_eq_tol(bsa_alibi_slope(0, 8), 0.5f, 1e-7f);
  ck_assert_float_eq_tol(bsa_alibi_slope(7, 8), 1.0f / 256, 1e-9f);
  /* 12 heads: 8 from 2^(-8(h+1)/8), then 2^(-4 (2k+1)/8). */
  ck_assert_float_eq_tol(bsa_alibi_slope(8, 12), (float)pow(2.0, -0.5), 1e-7f);
  ck_assert_float_eq_tol(bsa_alibi_slope(11, 12), (float)pow(2.0, -3.5), 1e-7f);
}
END_TEST

/* Plan facts: visible pair counts equal the reference mask's. */
START_TEST(test_plan_info_counts) {
  uint64_t rng = mix(77 + (uint64_t)_i);
  bsa_attn_params p = {0};
  p.num_qo_heads = 4;
  p.num_kv_heads = 2;
  p.head_dim = 8;
  p.qo_len = 150 + _i * 7;
  p.kv_len = 200 - _i * 3;
  p.causal = _i & 1;
  const int64_t MB = 5, NB = 6;
  int32_t rsz[2 * 5], csz[2 * 6];
  uint8_t map[2 * 5 * 6];
  for (int h = 0; h < 2; h++) {
    random_partition(rsz + h * MB, MB, p.qo_len, 1, &rng);
    random_partition(csz + h * NB, NB, p.kv_len, 1, &rng);
  }
  for (int i = 0; i < 60; i++) map[i] = ref_rand_unit(&rng) < 0.5;
  bsa_var_desc d = {MB, NB, map, rsz, csz};
  bsa_ctx *ctx;
  ck_assert_int_eq(bsa_ctx_create(NULL, &ctx), BSA_OK);
  bsa_plan *plan;
  ck_assert_int_eq(bsa_plan_create_var(ctx, &p, &d, &plan), BSA_OK);
  uint8_t *em = ref_mask_from_var(&p, &d);
  int64_t vis = 0, tot = 0, off = p.kv_len - p.qo_len;
  for (int h = 0; h < 4; h++)
    for (int64_t t = 0; t < p.qo_len; t++)
      for (int64_t j = 0; j < p.kv_len; j++) {
        int causal_ok = !p.causal || j <= t + off;
        tot += causal_ok;
        vis += causal_ok && em[((h / 2) * p.qo_len + t) * p.kv_len + j];
      }
  bsa_plan_info info;
  ck_assert_int_eq(bsa_plan_get_info(plan, &info), BSA_OK);
  ck_assert_int_eq(info.visible_pairs, vis);
  ck_assert_int_eq(info.total_pairs, tot);
  ck_assert_double_eq_tol(bsa_plan_flops(plan), 4.0 * 8 * vis, 1e-6);
  free(em);
  bsa_plan_destroy(plan);
  bsa_ctx_destroy(ctx);
}
END_TEST

/* Token counts x heads past 2^31 are counted with 64-bit arithmetic. */
START_TEST(test_large_lengths_64bit) {
  bsa_attn_params p = {0};
  p.num_qo_heads = 16;
  p.num_kv_heads = 16;
  p.head_dim = 128;
  p.qo_len = 64;
  p.kv_len = (int64_t)1 << 28; /* kv tokens x heads = 2^32 */
  bsa_ctx *ctx;
  ck_assert_int_eq(bsa_ctx_create(NULL, &ctx), BSA_OK);
  bsa_plan *plan;
  ck_assert_int_eq(bsa_plan_create_dense(ctx, &p, &plan), BSA_OK);
  bsa_plan_info info;
  bsa_plan_get_info(plan, &info);
  ck_assert_int_eq(info.visible_pairs, (int64_t)16 * 64 * ((int64_t)1 << 28));
  ck_assert_int_eq(info.total_pairs, (int64_t)1 << 38);
  ck_assert_int_eq(bsa__tok_offset(BSA_LAYOUT_HND, p.kv_len, 16, 128, p.kv_len - 1, 15),
                   ((int64_t)15 * p.kv_len + p.kv_len - 1) * 128);
  ck_assert(bsa__tok_offset(BSA_LAYOUT_NHD, p.kv_len, 16, 128, p.kv_len - 1, 15) >
            ((int64_t)1 << 31));
  bsa_plan_destroy(plan);
  bsa_ctx_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------ errors */

static bsa_attn_params good_params(void) {
  bsa_attn_params p = {0};
  p.num_qo_heads = 4;
  p.num_kv_heads = 2;
  p.head_dim = 16;
  p.qo_len = 32;
  p.kv_len = 32;
  return p;
}

/* Expects plan creation to fail with st and a message containing needle. */
static void expect_fail(bsa_ctx *ctx, const bsa_attn_params *p, const bsa_bsr_desc *b,
                        const bsa_var_desc *v, bsa_status want, const char *needle) {
  bsa_plan *plan = (bsa_plan *)0x1;
  bsa_status st = b   ? bsa_plan_create_bsr(ctx, p, b, &plan)
                  : v ? bsa_plan_create_var(ctx, p, v, &plan)
                      : bsa_plan_create_dense(ctx, p, &plan);
  ck_assert_int_eq(st, want);
  ck_assert_ptr_null(plan);
  ck_assert_msg(strstr(bsa_ctx_last_error(ctx), needle) != NULL, "message '%s' does not name '%s'",
                bsa_ctx_last_error(ctx), needle);
  ck_assert_str_eq(bsa_last_error(), bsa_ctx_last_error(ctx));
}

START_TEST(test_param_errors) {
  bsa_ctx *ctx;
  ck_assert_int_eq(bsa_ctx_create(NULL, &ctx), BSA_OK);
  bsa_attn_params p;
#define BAD(field, value, needle) \
  p = good_params();              \
  p.field = value;                \
  expect_fail(ctx, &p, NULL, NULL, BSA_ERR_INVALID_ARG, needle);
  BAD(num_qo_heads, 0, "num_qo_heads = 0");
  BAD(num_kv_heads, 0, "num_kv_heads = 0");
  BAD(num_qo_heads, 5, "num_qo_heads = 5 is not a multiple of num_kv_heads = 2");
  BAD(head_dim, 0, "head_dim = 0");
  BAD(head_dim, 2048, "head_dim = 2048");
  BAD(qo_len, 0, "qo_len = 0");
  BAD(kv_len, -3, "kv_len = -3");
  BAD(kv_dtype, BSA_DTYPE_F16, "kv_dtype = f16 does not match q_dtype = f32");
  BAD(q_dtype, (bsa_dtype)7, "q_dtype = 7");
  BAD(o_dtype, (bsa_dtype)9, "o_dtype = 9");
  BAD(layout, (bsa_layout)3, "layout = 3");
  BAD(sm_scale, -1.0f, "sm_scale = -1");
  BAD(logits_soft_cap, NAN, "logits_soft_cap");
  BAD(causal, 2, "causal = 2");
  BAD(pos_encoding, (bsa_pos_encoding)5, "pos_encoding = 5");
  BAD(rope_theta, -1.0f, "rope_theta = -1");
  p = good_params();
  p.pos_encoding = BSA_POS_ROPE_LLAMA;
  p.head_dim = 15;
  expect_fail(ctx, &p, NULL, NULL, BSA_ERR_INVALID_ARG, "head_dim = 15 must be even");
  p = good_params();
  expect_fail(ctx, NULL, NULL, NULL, BSA_ERR_INVALID_ARG, "params is NULL");
#undef BAD
  bsa_plan *plan;
  ck_assert_int_eq(bsa_plan_create_dense(NULL, &p, &plan), BSA_ERR_INVALID_ARG);
  ck_assert(strstr(bsa_last_error(), "ctx is NULL"));
  ck_assert_int_eq(bsa_plan_create_dense(ctx, &p, NULL), BSA_ERR_INVALID_ARG);
  ck_assert(strstr(bsa_last_error(), "out is NULL"));
  ck_assert_int_eq(bsa_plan_create_bsr(ctx, &p, NULL, &plan), BSA_ERR_INVALID_ARG);
  ck_assert(strstr(bsa_last_error(), "bsr is NULL"));
  ck_assert_int_eq(bsa_plan_create_var(ctx, &p, NULL, &plan), BSA_ERR_INVALID_ARG);
  ck_assert(strstr(bsa_last_error(), "var is NULL"));
  /* run with NULL pointers */
  ck_assert_int_eq(bsa_plan_create_dense(ctx, &p, &plan), BSA_OK);
  float buf[4 * 32 * 16];
  ck_assert_int_eq(bsa_plan_run(plan, buf, NULL, buf, buf, NULL), BSA_ERR_INVALID_ARG);
  ck_assert(strstr(bsa_ctx_last_error(ctx), "k is NULL"));
  ck_assert_int_eq(bsa_plan_run(NULL, buf, buf, buf, buf, NULL), BSA_ERR_INVALID_ARG);
  bsa_plan_destroy(plan);
  bsa_plan_destroy(NULL);
  bsa_ctx_destroy(ctx);
  bsa_ctx_destroy(NULL);
}
END_TEST

START_TEST(test_ctx_errors) {
  bsa_ctx *ctx = (bsa_ctx *)0x1;
  bsa_ctx_options o = {0};
  o.num_threads = -1;
  ck_assert_int_eq(bsa_ctx_create(&o, &ctx), BSA_ERR_INVALID_ARG);
  ck_assert_ptr_null(ctx);
  ck_assert(strstr(bsa_last_error(), "num_threads = -1"));
  o.num_threads = 0;
  o.device = (bsa_device)4;
  ck_assert_int_eq(bsa_ctx_create(&o, &ctx), BSA_ERR_INVALID_ARG);
  ck_assert(strstr(bsa_last_error(), "device = 4"));
#ifndef BSA_HAVE_CUDA
  o.device = BSA_DEVICE_CUDA;
  ck_assert_int_eq(bsa_ctx_create(&o, &ctx), BSA_ERR_NO_DEVICE);
  ck_assert(strstr(bsa_last_error(), "without the CUDA backend"));
#endif
  ck_assert_int_eq(bsa_ctx_create(NULL, NULL), BSA_ERR_INVALID_ARG);
  bsa_dtype dt;
  ck_assert_int_eq(bsa_dtype_parse("fp8", &dt), BSA_ERR_INVALID_ARG);
  ck_assert(strstr(bsa_last_error(), "dtype = 'fp8'"));
  ck_assert_int_eq(bsa_dtype_parse("bf16", &dt), BSA_OK);
  ck_assert_int_eq(dt, BSA_DTYPE_BF16);
}
END_TEST

START_TEST(test_bsr_errors) {
  bsa_ctx *ctx;
  ck_assert_int_eq(bsa_ctx_create(NULL, &ctx), BSA_OK);
  bsa_attn_params p = good_params(); /* 32 x 32, R = C = 8: MB = NB = 4 */
  int32_t indptr[5] = {0, 1, 2, 3, 4};
  int32_t indices[8] = {0, 1, 2, 3, 0, 0, 0, 0};
  bsa_bsr_desc b = {8, 8, indptr, indices, NULL, 0};
  b.R = 0;
  expect_fail(ctx, &p, &b, NULL, BSA_ERR_INVALID_ARG, "bsr.R = 0");
  b.R = 8;
  b.C = -1;
  expect_fail(ctx, &p, &b, NULL, BSA_ERR_INVALID_ARG, "bsr.C = -1");
  b.C = 8;
  b.indptr = NULL;
  expect_fail(ctx, &p, &b, NULL, BSA_ERR_INVALID_ARG, "bsr.indptr is NULL");
  b.indptr = indptr;
  indptr[2] = 0;
  expect_fail(ctx, &p, &b, NULL, BSA_ERR_INVALID_ARG, "indptr is not monotone");
  indptr[2] = 2;
  indptr[0] = 1;
  expect_fail(ctx, &p, &b, NULL, BSA_ERR_INVALID_ARG, "bsr.indptr[0] = 1");
  indptr[0] = 0;
  indices[2] = 4;
  expect_fail(ctx, &p, &b, NULL, BSA_ERR_INVALID_ARG, "bsr.indices[2] = 4 is out of range");
  indices[2] = -1;
  expect_fail(ctx, &p, &b, NULL, BSA_ERR_INVALID_ARG, "bsr.indices[2] = -1");
  indices[2] = 2;
  int32_t dup_ptr[5] = {0, 2, 2, 2, 2};
  int32_t dup_idx[2] = {3, 3};
  bsa_bsr_desc d = {8, 8, dup_ptr, dup_idx, NULL, 0};
  expect_fail(ctx, &p, &d, NULL, BSA_ERR_INVALID_ARG, "bsr.indices[1] = 3 is duplicated");
  b.indices = NULL;
  expect_fail(ctx, &p, &b, NULL, BSA_ERR_INVALID_ARG, "bsr.indices is NULL");
  b.indices = indices;
  /* per-kv-head: head 1 must start where head 0 ended */
  int32_t ph_ptr[10] = {0, 1, 2, 3, 4, 5, 5, 6, 7, 8};
  bsa_bsr_desc ph = {8, 8, ph_ptr, indices, NULL, 1};
  expect_fail(ctx, &p, &ph, NULL, BSA_ERR_INVALID_ARG, "must equal the end of the previous head");
  ph_ptr[5] = 4;
  bsa_plan *plan;
  ck_assert_int_eq(bsa_plan_create_bsr(ctx, &p, &ph, &plan), BSA_OK);
  bsa_plan_destroy(plan);
  ph.per_kv_head = 3;
  expect_fail(ctx, &p, &ph, NULL, BSA_ERR_INVALID_ARG, "per_kv_head = 3");
  /* Nothing the caller owns is modified by a failed plan. */
  int32_t ptr_copy[5];
  memcpy(ptr_copy, indptr, sizeof ptr_copy);
  indices[0] = 9;
  expect_fail(ctx, &p, &b, NULL, BSA_ERR_INVALID_ARG, "bsr.indices[0] = 9");
  ck_assert_mem_eq(ptr_copy, indptr, sizeof ptr_copy);
  ck_assert_int_eq(indices[0], 9);
  bsa_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_var_errors) {
  bsa_ctx *ctx;
  ck_assert_int_eq(bsa_ctx_create(NULL, &ctx), BSA_OK);
  bsa_attn_params p = good_params(); /* Hkv = 2, 32 x 32 */
  uint8_t map[2 * 2 * 2] = {1, 1, 1, 1, 1, 1, 1, 1};
  int32_t rsz[4] = {16, 16, 0, 32};
  int32_t csz[4] = {10, 22, 32, 0};
  bsa_var_desc v = {2, 2, map, rsz, csz};
  bsa_plan *plan;
  ck_assert_int_eq(bsa_plan_create_var(ctx, &p, &v, &plan), BSA_OK);
  bsa_plan_destroy(plan);
  rsz[3] = 31;
  expect_fail(ctx, &p, NULL, &v, BSA_ERR_INVALID_ARG,
              "var.block_row_sz[1, :] sums to 31 but qo_len = 32");
  rsz[3] = 32;
  csz[0] = 11;
  expect_fail(ctx, &p, NULL, &v, BSA_ERR_INVALID_ARG,
              "var.block_col_sz[0, :] sums to 33 but kv_len = 32");
  csz[0] = 10;
  rsz[2] = -1;
  rsz[3] = 33;
  expect_fail(ctx, &p, NULL, &v, BSA_ERR_INVALID_ARG, "var.block_row_sz[1, 0] = -1 is negative");
  rsz[2] = 0;
  rsz[3] = 32;
  csz[3] = -2;
  expect_fail(ctx, &p, NULL, &v, BSA_ERR_INVALID_ARG, "var.block_col_sz[1, 1] = -2 is negative");
  csz[3] = 0;
  v.num_block_rows = 0;
  expect_fail(ctx, &p, NULL, &v, BSA_ERR_INVALID_ARG, "var.num_block_rows = 0");
  v.num_block_rows = 2;
  v.block_mask_map = NULL;
  expect_fail(ctx, &p, NULL, &v, BSA_ERR_INVALID_ARG, "var.block_mask_map is NULL");
  v.block_mask_map = map;
  v.block_col_sz = NULL;
  expect_fail(ctx, &p, NULL, &v, BSA_ERR_INVALID_ARG, "var.block_col_sz is NULL");
  bsa_ctx_destroy(ctx);
}
END_TEST

static Suite *attention_suite(void) {
  Suite *s = suite_create("attention");
  TCase *tc = tcase_create("grid");
  tcase_set_timeout(tc, 600);
  tcase_add_loop_test(tc, test_bsr_grid, 0, 400);
  tcase_add_loop_test(tc, test_var_grid, 0, 100);
  tcase_add_loop_test(tc, test_dense_grid, 0, 50);
  tcase_add_loop_test(tc, test_var_threaded_build, 0, 4);
  tcase_add_loop_test(tc, test_dims_dtypes_layouts, 0, 24);
  tcase_add_loop_test(tc, test_odd_head_dims, 0, 24);
  tcase_add_loop_test(tc, test_v_alignment_per_run, 0, 2);
  tcase_add_loop_test(tc, test_streamed_output, 0, 24);
  suite_add_tcase(s, tc);
  TCase *tu = tcase_create("units");
  tcase_add_test(tu, test_half_conversions);
  tcase_add_test(tu, test_alibi_slopes);
  tcase_add_loop_test(tu, test_plan_info_counts, 0, 6);
  tcase_add_test(tu, test_large_lengths_64bit);
  suite_add_tcase(s, tu);
  TCase *te = tcase_create("errors");
  tcase_add_test(te, test_param_errors);
  tcase_add_test(te, test_ctx_errors);
  tcase_add_test(te, test_bsr_errors);
  tcase_add_test(te, test_var_errors);
  suite_add_tcase(s, te);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(attention_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
