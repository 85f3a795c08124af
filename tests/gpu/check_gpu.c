/*
 * tests/gpu/check_gpu.c - the CUDA backend against the CPU backend.
 *
 * Every case builds one sparsity description (dense, BSR with or without
 * per-element masks and per-kv-head patterns, variable blocks with zero
 * sizes and empty rows), runs it through a CPU plan (float32 output, the
 * reference) and a CUDA plan on fresh random inputs, and compares: relative
 * L2 of O, every output element written (outputs are poisoned with NaN
 * first), rows with no visible key exactly 0 with LSE = -inf, and LSE close.
 *
 * Every case runs each kernel family on the same inputs and reference
 * (BSA_CUDA_KERNEL=wgmma, then =wgmma with its persistent plans on 3 CTAs
 * (BSA_CUDA_CTAS=3: each CTA walks many works, where one CTA per SM would
 * leave these small problems one or two each), then =mma; just the one
 * given when the variable is set by the caller), so one CUDA context per
 * case serves them all.
 *
 * test_schedule_threads builds large plans with 1 to 8 plan threads and
 * compares the uploaded schedules byte for byte.
 *
 * BSA_TEST_SHARD=k/n runs every n-th test only (see other_shard), for n
 * processes side by side: each test's time is mostly its process's CUDA
 * start, which the GPU machine's cores run in parallel.
 *
 * The process never touches CUDA itself: a child process probes for a
 * device (exit 77 = skip when there is none), and every test runs in its
 * own Check fork.  Set BSA_TEST_SEED to repeat a run; failures print it.
 *
 * Tolerances (relative L2 of O against the CPU's float32 output): bf16
 * 1e-2, f16 4e-3.  The GPU rounds P to the input dtype for P V and RoPE'd
 * q/k to the input dtype, the CPU keeps both in float32.
 */
#include "config.h"

#include <check.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bsa.h"
#include "kernels/kernels.h"

static uint64_t g_seed;
/* Kernel families every case runs: BSA_CUDA_KERNEL and BSA_CUDA_CTAS
 * values (NULL: unset) and a label. */
typedef struct family {
  const char *kernel, *ctas, *label;
} family;
static family g_fam[3] = {
    {"wgmma", NULL, "wgmma"}, {"wgmma", "3", "wgmma on 3 CTAs"}, {"mma", NULL, "mma"}};
static int g_nfam = 3;
static char g_given[32];
/* BSA_TEST_SHARD=k/n: this process runs test k of every n (numbered over
 * the suite, loop iterations each) and passes the others at once, so that
 * n processes with k = 0 .. n - 1 run every test once between them. */
static int g_shard = 0, g_nshards = 1;
static int other_shard(int num) { return g_nshards > 1 && num % g_nshards != g_shard; }

static void set_family(const family *f) {
  setenv("BSA_CUDA_KERNEL", f->kernel, 1);
  if (f->ctas)
    setenv("BSA_CUDA_CTAS", f->ctas, 1);
  else
    unsetenv("BSA_CUDA_CTAS");
}

static uint64_t rnd_u64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double rnd_unit(uint64_t *s) {
  return (double)(rnd_u64(s) >> 11) * (1.0 / 9007199254740992.0);
}
static double rnd_normal(uint64_t *s) {
  double u = rnd_unit(s), v = rnd_unit(s);
  if (u < 1e-300) u = 1e-300;
  return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}
static uint64_t mix(uint64_t x) {
  uint64_t s = x * 0x9e3779b97f4a7c15ull + 777;
  return rnd_u64(&s);
}

typedef enum { KIND_DENSE, KIND_BSR, KIND_VAR } kind_t;

typedef struct gcase {
  kind_t kind;
  int64_t M, N, R, C;
  int Hq, Hkv, D;
  int causal;
  float cap;
  bsa_pos_encoding pos;
  int elemask, per_head;
  bsa_layout layout;
  bsa_dtype dtype;
  int want_lse;
  double density;
  int force_empty_row;
  int zero_sizes;
  int64_t MB, NB; /* var */
} gcase;

static const int64_t MN_VALUES[6] = {1, 63, 64, 257, 1000, 2000};
static const int64_t RC_VALUES[4] = {1, 4, 16, 64};
static const int HEADS[4][2] = {{1, 1}, {4, 1}, {4, 2}, {16, 4}};
static const int DIMS[3] = {64, 128, 256};

static void *random_tensor(bsa_dtype dt, size_t n, uint64_t *rng) {
  float *f = malloc(sizeof(float) * n);
  for (size_t i = 0; i < n; i++) f[i] = (float)rnd_normal(rng);
  void *x = malloc(n * bsa_dtype_size(dt));
  bsa_convert(x, dt, f, BSA_DTYPE_F32, n);
  free(f);
  return x;
}

static void random_partition(int32_t *sz, int64_t nb, int64_t total, int allow_zero,
                             uint64_t *rng) {
  if (!allow_zero && nb > total) allow_zero = 1;
  int64_t *cuts = malloc(sizeof(int64_t) * (size_t)(nb + 1));
  cuts[0] = 0;
  cuts[nb] = total;
  for (int64_t i = 1; i < nb; i++)
    cuts[i] = allow_zero ? (int64_t)(rnd_unit(rng) * (double)(total + 1))
                         : 1 + (int64_t)(rnd_unit(rng) * (double)(total - 1));
  for (int64_t i = 1; i < nb; i++)
    for (int64_t k = i; k > 1 && cuts[k] < cuts[k - 1]; k--) {
      int64_t t = cuts[k];
      cuts[k] = cuts[k - 1];
      cuts[k - 1] = t;
    }
  for (int64_t i = 1; i < nb; i++) {
    if (cuts[i] > total) cuts[i] = total;
    if (!allow_zero && cuts[i] <= cuts[i - 1]) cuts[i] = cuts[i - 1] + 1;
  }
  for (int64_t i = 0; i < nb; i++) sz[i] = (int32_t)(cuts[i + 1] - cuts[i]);
  free(cuts);
}

/* A description and the plans on both devices. */
typedef struct built {
  int32_t *indptr, *indices, *rsz, *csz;
  uint8_t *bmask, *map;
} built;

static bsa_status make_plan(bsa_ctx *ctx, const gcase *c, const bsa_attn_params *p, built *b,
                            uint64_t *rng, bsa_plan **plan) {
  if (c->kind == KIND_DENSE) return bsa_plan_create_dense(ctx, p, plan);
  if (c->kind == KIND_BSR) {
    bsa_bsr_desc d = {c->R, c->C, b->indptr, b->indices, b->bmask, c->per_head};
    return bsa_plan_create_bsr(ctx, p, &d, plan);
  }
  (void)rng;
  bsa_var_desc d = {c->MB, c->NB, b->map, b->rsz, b->csz};
  return bsa_plan_create_var(ctx, p, &d, plan);
}

static void build_desc(const gcase *c, built *b, uint64_t *rng) {
  memset(b, 0, sizeof *b);
  if (c->kind == KIND_BSR) {
    const int64_t MB = (c->M + c->R - 1) / c->R, NB = (c->N + c->C - 1) / c->C;
    const int64_t heads = c->per_head ? c->Hkv : 1;
    b->indptr = malloc(sizeof(int32_t) * (size_t)(heads * (MB + 1)));
    b->indices = malloc(sizeof(int32_t) * (size_t)(heads * MB * NB + 1));
    int64_t nnz = 0;
    for (int64_t h = 0; h < heads; h++) {
      b->indptr[h * (MB + 1)] = (int32_t)nnz;
      for (int64_t i = 0; i < MB; i++) {
        int64_t start = nnz;
        if (!(c->force_empty_row && i == 0))
          for (int64_t j = 0; j < NB; j++)
            if (rnd_unit(rng) < c->density) b->indices[nnz++] = (int32_t)j;
        for (int64_t a = nnz - 1; a > start; a--) { /* unsorted columns */
          int64_t x = start + (int64_t)(rnd_u64(rng) % (uint64_t)(a - start + 1));
          int32_t t = b->indices[a];
          b->indices[a] = b->indices[x];
          b->indices[x] = t;
        }
        b->indptr[h * (MB + 1) + i + 1] = (int32_t)nnz;
      }
    }
    if (c->elemask) {
      b->bmask = malloc((size_t)(nnz * c->R * c->C + 1));
      for (int64_t e = 0; e < nnz * c->R * c->C; e++) b->bmask[e] = rnd_unit(rng) < 0.7;
    }
  } else if (c->kind == KIND_VAR) {
    b->rsz = malloc(sizeof(int32_t) * (size_t)(c->Hkv * c->MB));
    b->csz = malloc(sizeof(int32_t) * (size_t)(c->Hkv * c->NB));
    b->map = malloc((size_t)(c->Hkv * c->MB * c->NB));
    for (int h = 0; h < c->Hkv; h++) {
      random_partition(b->rsz + h * c->MB, c->MB, c->M, c->zero_sizes, rng);
      random_partition(b->csz + h * c->NB, c->NB, c->N, c->zero_sizes, rng);
      for (int64_t i = 0; i < c->MB; i++)
        for (int64_t j = 0; j < c->NB; j++)
          b->map[(h * c->MB + i) * c->NB + j] =
              (c->force_empty_row && i == 0) ? 0 : rnd_unit(rng) < c->density;
    }
  }
}

static void free_desc(built *b) {
  free(b->indptr), free(b->indices), free(b->rsz), free(b->csz), free(b->bmask), free(b->map);
}

static void case_params(const gcase *c, uint64_t seed, bsa_attn_params *p) {
  memset(p, 0, sizeof *p);
  p->num_qo_heads = c->Hq;
  p->num_kv_heads = c->Hkv;
  p->head_dim = c->D;
  p->qo_len = c->M;
  p->kv_len = c->N;
  p->q_dtype = p->kv_dtype = p->o_dtype = c->dtype;
  p->layout = c->layout;
  p->causal = c->causal;
  p->logits_soft_cap = c->cap;
  p->pos_encoding = c->pos;
  if (c->pos == BSA_POS_ROPE_LLAMA && (seed & 1)) {
    p->rope_theta = 5e5f;
    p->rope_scale = 2.0f;
  }
  if (seed & 2) p->sm_scale = 0.9f / sqrtf((float)c->D);
}

static void describe(const gcase *c, char *buf, size_t n) {
  snprintf(buf, n,
           "seed=%llu kind=%d M=%lld N=%lld R=%lld C=%lld H=%d/%d D=%d %s %s causal=%d cap=%g "
           "pos=%d elemask=%d per_head=%d lse=%d",
           (unsigned long long)g_seed, (int)c->kind, (long long)c->M, (long long)c->N,
           (long long)c->R, (long long)c->C, c->Hq, c->Hkv, c->D, bsa_dtype_name(c->dtype),
           c->layout == BSA_LAYOUT_NHD ? "NHD" : "HND", c->causal, (double)c->cap, (int)c->pos,
           c->elemask, c->per_head, c->want_lse);
}

/* Device buffers of one case. */
typedef struct dev {
  bsa_ctx *ctx;
  void *q, *k, *v, *o;
  float *lse;
} dev;

/* Allocates d's buffers on its context (elements of esz bytes; nq query
 * and output elements, nkv key and value elements, nl LSE rows) and
 * uploads q, k and v. */
static void dev_upload(dev *d, const void *q, const void *k, const void *v, size_t nq, size_t nkv,
                       size_t nl, size_t esz) {
  ck_assert_int_eq(bsa_ctx_alloc(d->ctx, nq * esz, &d->q), BSA_OK);
  ck_assert_int_eq(bsa_ctx_alloc(d->ctx, nkv * esz, &d->k), BSA_OK);
  ck_assert_int_eq(bsa_ctx_alloc(d->ctx, nkv * esz, &d->v), BSA_OK);
  ck_assert_int_eq(bsa_ctx_alloc(d->ctx, nq * esz, &d->o), BSA_OK);
  ck_assert_int_eq(bsa_ctx_alloc(d->ctx, nl * 4, (void **)&d->lse), BSA_OK);
  ck_assert_int_eq(bsa_ctx_copy_to_device(d->ctx, d->q, q, nq * esz), BSA_OK);
  ck_assert_int_eq(bsa_ctx_copy_to_device(d->ctx, d->k, k, nkv * esz), BSA_OK);
  ck_assert_int_eq(bsa_ctx_copy_to_device(d->ctx, d->v, v, nkv * esz), BSA_OK);
}

/* Frees d's buffers and destroys its context. */
static void dev_release(dev *d) {
  bsa_ctx_free(d->ctx, d->q), bsa_ctx_free(d->ctx, d->k), bsa_ctx_free(d->ctx, d->v);
  bsa_ctx_free(d->ctx, d->o), bsa_ctx_free(d->ctx, d->lse);
  bsa_ctx_destroy(d->ctx);
}

/* Fills the first bytes of d->o (and lse_n floats of d->lse) with 0xff,
 * NaN in every dtype. */
static void dev_poison(dev *d, size_t o_bytes, size_t lse_n) {
  const size_t bytes = o_bytes > lse_n * 4 ? o_bytes : lse_n * 4;
  unsigned char *poison = malloc(bytes);
  memset(poison, 0xff, bytes);
  ck_assert_int_eq(bsa_ctx_copy_to_device(d->ctx, d->o, poison, o_bytes), BSA_OK);
  if (lse_n) ck_assert_int_eq(bsa_ctx_copy_to_device(d->ctx, d->lse, poison, lse_n * 4), BSA_OK);
  free(poison);
}

static void dev_poison_run(dev *d, bsa_plan *plan, size_t o_bytes, size_t lse_n, int want_lse) {
  dev_poison(d, o_bytes, lse_n);
  bsa_status st = bsa_plan_run(plan, d->q, d->k, d->v, d->o, want_lse ? d->lse : NULL);
  ck_assert_msg(st == BSA_OK, "cuda run failed: %s", bsa_ctx_last_error(d->ctx));
  st = bsa_ctx_synchronize(d->ctx);
  ck_assert_msg(st == BSA_OK, "cuda sync failed: %s", bsa_ctx_last_error(d->ctx));
}

/* Compares the GPU output (dtype odt) with the CPU float32 reference. */
static void compare(const gcase *c, const bsa_attn_params *p, const void *o_gpu,
                    const float *lse_gpu, const float *o_ref, const float *lse_ref,
                    const char *what) {
  char desc[400];
  describe(c, desc, sizeof desc);
  const size_t nq = (size_t)(c->M * c->Hq * c->D);
  float *of = malloc(sizeof(float) * nq);
  bsa_convert(of, BSA_DTYPE_F32, o_gpu, p->o_dtype, nq);
  double num = 0, den = 0;
  for (size_t i = 0; i < nq; i++) {
    ck_assert_msg(isfinite(of[i]), "%s: o[%zu] = %g not written (%s)", what, i, (double)of[i],
                  desc);
    double d = (double)of[i] - o_ref[i];
    num += d * d;
    den += (double)o_ref[i] * o_ref[i];
  }
  const double tol = p->o_dtype == BSA_DTYPE_F16 ? 4e-3 : 1e-2;
  if (den > 0)
    ck_assert_msg(sqrt(num / den) < tol, "%s: rel L2 = %.3g >= %.1g (%s)", what, sqrt(num / den),
                  tol, desc);
  else
    ck_assert_msg(num == 0, "%s: every row is empty but O is not zero (%s)", what, desc);
  const double ltol =
      (c->pos == BSA_POS_ROPE_LLAMA ? (c->dtype == BSA_DTYPE_BF16 ? 3e-2 : 6e-3) : 1e-3) +
      (c->cap > 0 ? 5e-3 : 0);
  for (int64_t t = 0; t < c->M; t++)
    for (int h = 0; h < c->Hq; h++) {
      const float lr = lse_ref[t * c->Hq + h];
      if (lr == -INFINITY) {
        int64_t ob =
            c->layout == BSA_LAYOUT_NHD ? (t * c->Hq + h) * c->D : ((int64_t)h * c->M + t) * c->D;
        for (int d = 0; d < c->D; d++)
          ck_assert_msg(of[ob + d] == 0.0f, "%s: empty row %lld head %d: o = %g (%s)", what,
                        (long long)t, h, (double)of[ob + d], desc);
      }
      if (!lse_gpu) continue;
      const float lv = lse_gpu[t * c->Hq + h];
      if (lr == -INFINITY)
        ck_assert_msg(lv == -INFINITY, "%s: lse[%lld,%d] = %g, want -inf (%s)", what, (long long)t,
                      h, (double)lv, desc);
      else
        ck_assert_msg(fabs((double)lv - lr) < ltol * (1 + fabs(lr)),
                      "%s: lse[%lld,%d] = %.7g, want %.7g (%s)", what, (long long)t, h, (double)lv,
                      (double)lr, desc);
    }
  free(of);
}

static void run_case(const gcase *c, uint64_t seed) {
  uint64_t rng = seed ^ g_seed;
  bsa_attn_params p;
  case_params(c, seed, &p);
  const size_t nq = (size_t)(c->M * c->Hq * c->D), nkv = (size_t)(c->N * c->Hkv * c->D);
  const size_t esz = bsa_dtype_size(c->dtype), nl = (size_t)(c->M * c->Hq);
  void *q = random_tensor(c->dtype, nq, &rng);
  void *k = random_tensor(c->dtype, nkv, &rng);
  void *v = random_tensor(c->dtype, nkv, &rng);
  built b;
  build_desc(c, &b, &rng);

  /* Reference: the CPU backend with float32 output. */
  bsa_ctx *cpu;
  ck_assert_int_eq(bsa_ctx_create(NULL, &cpu), BSA_OK);
  bsa_attn_params pr = p;
  pr.o_dtype = BSA_DTYPE_F32;
  bsa_plan *cplan = NULL;
  bsa_status st = make_plan(cpu, c, &pr, &b, &rng, &cplan);
  ck_assert_msg(st == BSA_OK, "cpu plan: %s", bsa_ctx_last_error(cpu));
  float *o_ref = malloc(sizeof(float) * nq), *lse_ref = malloc(sizeof(float) * nl);
  ck_assert_int_eq(bsa_plan_run(cplan, q, k, v, o_ref, lse_ref), BSA_OK);

  dev d;
  bsa_ctx_options opt = {0};
  opt.device = BSA_DEVICE_CUDA;
  st = bsa_ctx_create(&opt, &d.ctx);
  ck_assert_msg(st == BSA_OK, "cuda ctx: %s", bsa_last_error());
  dev_upload(&d, q, k, v, nq, nkv, nl, esz);
  void *o = malloc(nq * esz);
  float *lse = malloc(sizeof(float) * nl);

  /* Each kernel family on the same inputs and reference. */
  for (int kf = 0; kf < g_nfam; kf++) {
    char label[64];
    set_family(&g_fam[kf]);
    bsa_plan *gplan = NULL;
    st = make_plan(d.ctx, c, &p, &b, &rng, &gplan);
    ck_assert_msg(st == BSA_OK, "cuda plan (%s): %s", g_fam[kf].label, bsa_ctx_last_error(d.ctx));
    dev_poison_run(&d, gplan, nq * esz, nl, c->want_lse);
    ck_assert_int_eq(bsa_ctx_copy_to_host(d.ctx, o, d.o, nq * esz), BSA_OK);
    ck_assert_int_eq(bsa_ctx_copy_to_host(d.ctx, lse, d.lse, nl * 4), BSA_OK);
    snprintf(label, sizeof label, "run, %s", g_fam[kf].label);
    compare(c, &p, o, c->want_lse ? lse : NULL, o_ref, lse_ref, label);

    /* Plan reuse with fresh q. */
    if (seed % 4 == 0) {
      free(q);
      q = random_tensor(c->dtype, nq, &rng);
      ck_assert_int_eq(bsa_plan_run(cplan, q, k, v, o_ref, lse_ref), BSA_OK);
      ck_assert_int_eq(bsa_ctx_copy_to_device(d.ctx, d.q, q, nq * esz), BSA_OK);
      dev_poison_run(&d, gplan, nq * esz, nl, 1);
      ck_assert_int_eq(bsa_ctx_copy_to_host(d.ctx, o, d.o, nq * esz), BSA_OK);
      ck_assert_int_eq(bsa_ctx_copy_to_host(d.ctx, lse, d.lse, nl * 4), BSA_OK);
      snprintf(label, sizeof label, "reuse, %s", g_fam[kf].label);
      compare(c, &p, o, lse, o_ref, lse_ref, label);
    }
    bsa_plan_destroy(gplan);
  }

  bsa_plan_destroy(cplan);
  dev_release(&d);
  bsa_ctx_destroy(cpu);
  free(q), free(k), free(v), free(o), free(lse), free(o_ref), free(lse_ref);
  free_desc(&b);
}

/* Features of case i: every value meets every other often over a grid. */
static void draw_features(gcase *c, uint64_t i) {
  uint64_t h = mix(i);
  int hi = (int)(h % 4);
  c->Hq = HEADS[hi][0];
  c->Hkv = HEADS[hi][1];
  if (c->D == 0) c->D = DIMS[(h >> 8) % 3];
  if (c->M * c->N > 300000 && c->Hq > 4) c->Hq = 4, c->Hkv = 2; /* keep the CPU side quick */
  c->causal = (int)((h >> 16) & 1);
  c->cap = ((h >> 17) % 3 == 0) ? 5.0f : 0.0f;
  int pos = (int)((h >> 20) % 4);
  c->pos = pos == 1 ? BSA_POS_ROPE_LLAMA : pos == 2 ? BSA_POS_ALIBI : BSA_POS_NONE;
  c->elemask = (int)((h >> 24) & 1);
  c->per_head = (int)((h >> 25) & 1);
  if (c->layout == 0) c->layout = (h >> 26) & 1 ? BSA_LAYOUT_HND : BSA_LAYOUT_NHD;
  if (c->dtype == 0) c->dtype = (h >> 28) & 1 ? BSA_DTYPE_BF16 : BSA_DTYPE_F16;
  c->want_lse = (int)((h >> 34) % 4 != 0);
  c->density = ((h >> 36) % 2) ? 0.5 : 0.2;
  c->force_empty_row = (int)((h >> 38) % 4 == 0);
  c->zero_sizes = (int)((h >> 40) & 1);
  c->MB = 1 + (int64_t)((h >> 44) % 9);
  c->NB = 1 + (int64_t)((h >> 50) % 9);
}

/* Each head dim x dtype x layout, dense, at M and N from the grid. */
START_TEST(test_dense_grid) {
  if (other_shard(0 + _i)) return;
  gcase c;
  memset(&c, 0, sizeof c);
  c.kind = KIND_DENSE;
  c.D = DIMS[_i % 3];
  c.dtype = (_i / 3) % 2 ? BSA_DTYPE_BF16 : BSA_DTYPE_F16;
  c.layout = (_i / 6) % 2 ? BSA_LAYOUT_HND : BSA_LAYOUT_NHD;
  c.M = MN_VALUES[mix((uint64_t)_i + 1) % 6];
  c.N = MN_VALUES[mix((uint64_t)_i + 2) % 6];
  draw_features(&c, (uint64_t)_i + 100);
  c.dtype = (_i / 3) % 2 ? BSA_DTYPE_BF16 : BSA_DTYPE_F16;
  c.layout = (_i / 6) % 2 ? BSA_LAYOUT_HND : BSA_LAYOUT_NHD;
  run_case(&c, mix((uint64_t)_i + 200));
}
END_TEST

/* BSR: every (R, C) pair, three draws each, masks and per-head patterns. */
START_TEST(test_bsr_grid) {
  if (other_shard(36 + _i)) return;
  gcase c;
  memset(&c, 0, sizeof c);
  c.kind = KIND_BSR;
  int rc = _i % 16;
  c.R = RC_VALUES[rc / 4];
  c.C = RC_VALUES[rc % 4];
  c.M = MN_VALUES[mix((uint64_t)_i + 3) % 5];
  c.N = MN_VALUES[mix((uint64_t)_i + 4) % 5];
  draw_features(&c, (uint64_t)_i + 300);
  run_case(&c, mix((uint64_t)_i + 400));
}
END_TEST

/* Variable blocks with zero sizes and empty rows. */
START_TEST(test_var_grid) {
  if (other_shard(84 + _i)) return;
  gcase c;
  memset(&c, 0, sizeof c);
  c.kind = KIND_VAR;
  c.M = MN_VALUES[mix((uint64_t)_i + 5) % 6];
  c.N = MN_VALUES[mix((uint64_t)_i + 6) % 6];
  draw_features(&c, (uint64_t)_i + 500);
  run_case(&c, mix((uint64_t)_i + 600));
}
END_TEST

/* Few long rows: the schedule splits the keys and merges by LSE. */
START_TEST(test_split_kv) {
  if (other_shard(120 + _i)) return;
  gcase c;
  memset(&c, 0, sizeof c);
  c.kind = _i < 2 ? KIND_DENSE : KIND_VAR;
  c.M = 100;
  c.N = 9000;
  draw_features(&c, (uint64_t)_i + 700);
  c.Hq = 2;
  c.Hkv = 1;
  c.want_lse = 1;
  c.causal = _i % 2;
  c.density = 0.5;
  run_case(&c, mix((uint64_t)_i + 800));
}
END_TEST

/* GQA groups larger than one CTA's rows (packed rows split over CTAs). */
START_TEST(test_wide_group) {
  if (other_shard(124 + _i)) return;
  gcase c;
  memset(&c, 0, sizeof c);
  c.kind = _i == 0 ? KIND_DENSE : KIND_BSR;
  c.M = 37;
  c.N = 300;
  c.R = 16;
  c.C = 16;
  draw_features(&c, (uint64_t)_i + 900);
  c.Hq = 192;
  c.Hkv = 1;
  c.D = 64;
  c.density = 0.4;
  run_case(&c, mix((uint64_t)_i + 1000));
}
END_TEST

/* A run captured in a CUDA graph gives the same bytes as a direct run. */
START_TEST(test_graph_capture) {
  if (other_shard(126)) return;
  gcase c;
  memset(&c, 0, sizeof c);
  c.kind = KIND_VAR;
  c.M = 700;
  c.N = 900;
  c.MB = 7;
  c.NB = 9;
  draw_features(&c, 1100);
  c.MB = 7;
  c.NB = 9;
  c.D = 128;
  c.dtype = BSA_DTYPE_BF16;
  c.pos = BSA_POS_ROPE_LLAMA;
  uint64_t rng = g_seed ^ 0x5eed;
  bsa_attn_params p;
  case_params(&c, 3, &p);
  built b;
  build_desc(&c, &b, &rng);
  cudaStream_t s;
  ck_assert_int_eq(cudaStreamCreate(&s), cudaSuccess);
  bsa_ctx_options opt = {0};
  opt.device = BSA_DEVICE_CUDA;
  opt.cuda_stream = s;
  dev d;
  ck_assert_int_eq(bsa_ctx_create(&opt, &d.ctx), BSA_OK);
  const size_t nq = (size_t)(c.M * c.Hq * c.D), nkv = (size_t)(c.N * c.Hkv * c.D);
  const size_t nl = (size_t)(c.M * c.Hq);
  void *q = random_tensor(c.dtype, nq, &rng), *k = random_tensor(c.dtype, nkv, &rng);
  void *v = random_tensor(c.dtype, nkv, &rng);
  dev_upload(&d, q, k, v, nq, nkv, nl, 2);
  unsigned char *o1 = malloc(nq * 2), *o2 = malloc(nq * 2);
  for (int kf = 0; kf < g_nfam; kf++) {
    set_family(&g_fam[kf]);
    bsa_plan *plan;
    ck_assert_int_eq(make_plan(d.ctx, &c, &p, &b, &rng, &plan), BSA_OK);
    dev_poison_run(&d, plan, nq * 2, nl, 1);
    ck_assert_int_eq(bsa_ctx_copy_to_host(d.ctx, o1, d.o, nq * 2), BSA_OK);
    dev_poison(&d, nq * 2, 0);
    cudaGraph_t g;
    cudaGraphExec_t ge;
    ck_assert_int_eq(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
    bsa_status st = bsa_plan_run(plan, d.q, d.k, d.v, d.o, d.lse);
    ck_assert_int_eq(cudaStreamEndCapture(s, &g), cudaSuccess);
    ck_assert_msg(st == BSA_OK, "run under capture (%s): %s", g_fam[kf].label,
                  bsa_ctx_last_error(d.ctx));
    ck_assert_int_eq(cudaGraphInstantiate(&ge, g, 0), cudaSuccess);
    ck_assert_int_eq(cudaGraphLaunch(ge, s), cudaSuccess);
    ck_assert_int_eq(cudaStreamSynchronize(s), cudaSuccess);
    ck_assert_int_eq(bsa_ctx_copy_to_host(d.ctx, o2, d.o, nq * 2), BSA_OK);
    ck_assert_msg(memcmp(o1, o2, nq * 2) == 0, "graph replay differs from a direct run (%s)",
                  g_fam[kf].label);
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
    bsa_plan_destroy(plan);
  }
  dev_release(&d);
  cudaStreamDestroy(s);
  free(q), free(k), free(v), free(o1), free(o2);
  free_desc(&b);
}
END_TEST

/* The tensor-memory accelerator (TMA) paths of the warp-specialised
 * kernel, whole K/V tiles loaded and whole 64-row slices of O stored,
 * against the same plans with BSA_CUDA_TMA=load (loads only) and =0 (every
 * tile by cp.async, every row stored by the math threads): all fill and
 * read shared memory with the same bytes, so the outputs and LSE must be
 * identical, bit for bit.  Shapes (_i): dense, causal dense, BSR 128x128
 * (whole-tile segments), BSR 64x64 with per-element masks, variable blocks
 * with long and short segments (both loads in one item), each at head dims
 * 64 and 128, in both layouts; GQA group 2 with one CTA per work, group 1
 * on 3 persistent CTAs (HND stores O by TMA with a group of 1 only).  On a
 * device with the warp-specialised kernel (cc 9.0) the runs must have used
 * what the layout allows; the comparison itself covers every device. */
START_TEST(test_tma_paths) {
  if (other_shard(140 + _i)) return;
  const int shape = _i % 5, D = (_i / 5) % 2 ? 128 : 64;
  const int persistent = _i / 10;
  gcase c;
  memset(&c, 0, sizeof c);
  c.kind = shape < 2 ? KIND_DENSE : shape < 4 ? KIND_BSR : KIND_VAR;
  c.M = 700;
  c.N = 1500;
  c.Hq = persistent ? 2 : 4;
  c.Hkv = 2;
  c.D = D;
  c.dtype = _i % 2 ? BSA_DTYPE_BF16 : BSA_DTYPE_F16;
  c.causal = shape == 1;
  c.R = c.C = shape == 2 ? 128 : 64;
  c.elemask = shape == 3;
  c.per_head = 1;
  c.density = 0.3;
  c.MB = 5;
  c.NB = 9;
  c.want_lse = 1;
  uint64_t rng = g_seed ^ (0x7a3a00ull + (uint64_t)_i);
  built b;
  build_desc(&c, &b, &rng);
  if (c.kind == KIND_VAR) /* a long first column block, in every row: whole tiles too */
    for (int h = 0; h < c.Hkv; h++) {
      int32_t *cs = b.csz + h * c.NB;
      int32_t take = (int32_t)(c.N - cs[0]) < 600 ? (int32_t)(c.N - cs[0]) : 600;
      cs[0] += take;
      for (int64_t j = 1; j < c.NB && take > 0; j++) {
        const int32_t t = cs[j] < take ? cs[j] : take;
        cs[j] -= t, take -= t;
      }
      for (int64_t i = 0; i < c.MB; i++) b.map[(h * c.MB + i) * c.NB] = 1;
    }
  setenv("BSA_CUDA_KERNEL", "wgmma", 1);
  if (persistent)
    setenv("BSA_CUDA_CTAS", "3", 1);
  else
    unsetenv("BSA_CUDA_CTAS");
  for (int lay = 0; lay < 2; lay++) {
    c.layout = lay ? BSA_LAYOUT_HND : BSA_LAYOUT_NHD;
    bsa_attn_params p;
    case_params(&c, (uint64_t)_i, &p);
    const size_t nq = (size_t)(c.M * c.Hq * c.D), nkv = (size_t)(c.N * c.Hkv * c.D);
    const size_t nl = (size_t)(c.M * c.Hq);
    void *q = random_tensor(c.dtype, nq, &rng);
    void *k = random_tensor(c.dtype, nkv, &rng);
    void *v = random_tensor(c.dtype, nkv, &rng);
    dev d;
    bsa_ctx_options opt = {0};
    opt.device = BSA_DEVICE_CUDA;
    ck_assert_int_eq(bsa_ctx_create(&opt, &d.ctx), BSA_OK);
    dev_upload(&d, q, k, v, nq, nkv, nl, 2);
    static const char *const mode[3] = {NULL, "load", "0"}; /* BSA_CUDA_TMA */
    unsigned char *o[3], *l[3];
    int used[3];
    for (int t = 0; t < 3; t++) {
      if (mode[t])
        setenv("BSA_CUDA_TMA", mode[t], 1);
      else
        unsetenv("BSA_CUDA_TMA");
      bsa_plan *plan = NULL;
      ck_assert_int_eq(make_plan(d.ctx, &c, &p, &b, &rng, &plan), BSA_OK);
      dev_poison_run(&d, plan, nq * 2, nl, 1);
      used[t] = bsa__cuda_plan_tma(plan);
      o[t] = malloc(nq * 2);
      l[t] = malloc(nl * 4);
      ck_assert_int_eq(bsa_ctx_copy_to_host(d.ctx, o[t], d.o, nq * 2), BSA_OK);
      ck_assert_int_eq(bsa_ctx_copy_to_host(d.ctx, l[t], d.lse, nl * 4), BSA_OK);
      bsa_plan_destroy(plan);
    }
    unsetenv("BSA_CUDA_TMA");
    char desc[400];
    describe(&c, desc, sizeof desc);
    ck_assert_msg(used[2] == 0, "BSA_CUDA_TMA=0 still used TMA (%d, %s)", used[2], desc);
    int dev_id = 0, major = 0;
    ck_assert_int_eq(cudaGetDevice(&dev_id), cudaSuccess);
    ck_assert_int_eq(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev_id),
                     cudaSuccess);
    if (major == 9) {
      const int kv = lay ? BSA__TMA_HND : BSA__TMA_NHD;
      const int store = !lay || c.Hq == c.Hkv ? BSA__TMA_O : 0;
      ck_assert_msg(used[0] == (kv | store), "cc 9.0: TMA use %d, want %d (%s)", used[0],
                    kv | store, desc);
      ck_assert_msg(used[1] == kv, "cc 9.0, BSA_CUDA_TMA=load: TMA use %d, want %d (%s)", used[1],
                    kv, desc);
    }
    for (size_t i = 0; i < nq; i++)
      ck_assert_msg(((const uint16_t *)o[0])[i] != 0xffff, "o[%zu] not written (%s)", i, desc);
    for (int t = 1; t < 3; t++) {
      ck_assert_msg(memcmp(o[0], o[t], nq * 2) == 0,
                    "O differs between BSA_CUDA_TMA unset and =%s (%s)", mode[t], desc);
      ck_assert_msg(memcmp(l[0], l[t], nl * 4) == 0,
                    "LSE differs between BSA_CUDA_TMA unset and =%s (%s)", mode[t], desc);
    }
    for (int t = 0; t < 3; t++) free(o[t]), free(l[t]);
    dev_release(&d);
    free(q), free(k), free(v);
  }
  free_desc(&b);
}
END_TEST

/* Downloads a plan's uploaded schedule into a fresh buffer (*n bytes). */
static unsigned char *schedule_of(const bsa_plan *plan, size_t *n) {
  ck_assert_int_eq(bsa__cuda_plan_schedule(plan, NULL, 0, n), cudaSuccess);
  unsigned char *buf = malloc(*n ? *n : 1);
  ck_assert_int_eq(bsa__cuda_plan_schedule(plan, buf, *n, n), cudaSuccess);
  return buf;
}

/* Plans above the threshold of the threaded schedule build (items plus
 * work-list segments at least SCHED_PARALLEL_MIN = 2^15, lib/cuda_backend.c)
 * give the same uploaded bytes with 1, 2, 3, 5 and 8 plan threads: a range
 * dropped, done twice or written at the wrong offset changes them.  Shapes
 * (_i): 0 BSR 16x16, 1 the same causal on 8 heads (cut segments), 2 with per-element
 * masks (one segment per block), 3 variable blocks of about 200 rows (the
 * items of a block row share segments, so ranges must start at an item
 * with its own), 4 the same causal with a GQA group of 2 and persistent
 * work lists on 5 CTAs.  Every 37th block row is full, so that its items
 * are longer than the split length (pieces and merges). */
START_TEST(test_schedule_threads) {
  if (other_shard(127 + _i)) return;
  const int v = _i;
  gcase c;
  memset(&c, 0, sizeof c);
  c.kind = v < 3 ? KIND_BSR : KIND_VAR;
  c.M = c.N = v < 3 ? 4096 : 8192;
  c.R = c.C = 16;
  c.Hkv = v == 1 ? 8 : v < 3 ? 4 : 16; /* causal BSR: half the segments */
  c.Hq = v == 4 ? 2 * c.Hkv : c.Hkv;
  c.D = 128;
  c.dtype = BSA_DTYPE_BF16;
  c.causal = v == 1 || v == 4;
  c.elemask = v == 2;
  c.per_head = 1;
  c.MB = 40;
  c.NB = 600;
  uint64_t rng = g_seed ^ (0x7ead00ull + (uint64_t)v);
  bsa_attn_params p;
  case_params(&c, 0, &p);
  built b;
  memset(&b, 0, sizeof b);
  if (c.kind == KIND_BSR) {
    const int64_t MB = c.M / c.R, NB = c.N / c.C;
    b.indptr = malloc(sizeof(int32_t) * (size_t)(c.Hkv * (MB + 1)));
    b.indices = malloc(sizeof(int32_t) * (size_t)(c.Hkv * MB * NB));
    int64_t nnz = 0;
    for (int h = 0; h < c.Hkv; h++) {
      b.indptr[h * (MB + 1)] = (int32_t)nnz;
      for (int64_t i = 0; i < MB; i++) {
        for (int64_t j = 0; j < NB; j++)
          if (i % 37 == 0 || rnd_unit(&rng) < 0.2) b.indices[nnz++] = (int32_t)j;
        b.indptr[h * (MB + 1) + i + 1] = (int32_t)nnz;
      }
    }
    if (c.elemask) {
      b.bmask = malloc((size_t)(nnz * c.R * c.C));
      for (int64_t e = 0; e < nnz * c.R * c.C; e++) b.bmask[e] = rnd_unit(&rng) < 0.7;
    }
  } else {
    b.rsz = malloc(sizeof(int32_t) * (size_t)(c.Hkv * c.MB));
    b.csz = malloc(sizeof(int32_t) * (size_t)(c.Hkv * c.NB));
    b.map = malloc((size_t)(c.Hkv * c.MB * c.NB));
    for (int h = 0; h < c.Hkv; h++) {
      random_partition(b.rsz + h * c.MB, c.MB, c.M, 0, &rng);
      random_partition(b.csz + h * c.NB, c.NB, c.N, 0, &rng);
      for (int64_t i = 0; i < c.MB; i++)
        for (int64_t j = 0; j < c.NB; j++)
          b.map[(h * c.MB + i) * c.NB + j] = i % 37 == 0 || rnd_unit(&rng) < 0.2;
    }
  }
  setenv("BSA_CUDA_KERNEL", "wgmma", 1);
  if (v == 4)
    setenv("BSA_CUDA_CTAS", "5", 1);
  else
    unsetenv("BSA_CUDA_CTAS");
  const int threads[5] = {1, 2, 3, 5, 8};
  unsigned char *ref = NULL;
  size_t nref = 0;
  for (int t = 0; t < 5; t++) {
    bsa_ctx *ctx;
    bsa_ctx_options opt = {0};
    opt.device = BSA_DEVICE_CUDA;
    opt.num_threads = threads[t];
    ck_assert_int_eq(bsa_ctx_create(&opt, &ctx), BSA_OK);
    bsa_plan *plan = NULL;
    bsa_status st = make_plan(ctx, &c, &p, &b, &rng, &plan);
    ck_assert_msg(st == BSA_OK, "plan (%d threads): %s", threads[t], bsa_ctx_last_error(ctx));
    bsa_plan_info info;
    bsa_plan_get_info(plan, &info);
    ck_assert_msg(info.num_work_items + info.num_segments >= (1 << 15),
                  "shape %d: %lld items + %lld segments, below the threaded build", v,
                  (long long)info.num_work_items, (long long)info.num_segments);
    size_t n;
    unsigned char *got = schedule_of(plan, &n);
    if (t == 0) {
      ref = got;
      nref = n;
    } else {
      ck_assert_msg(n == nref && memcmp(got, ref, n) == 0,
                    "shape %d: the schedule with %d plan threads differs from 1 thread's (%zu "
                    "vs %zu bytes; seed=%llu)",
                    v, threads[t], n, nref, (unsigned long long)g_seed);
      free(got);
    }
    bsa_plan_destroy(plan);
    bsa_ctx_destroy(ctx);
  }
  free(ref);
  unsetenv("BSA_CUDA_CTAS");
  free_desc(&b);
}
END_TEST

/* bsa_plan_time on a CUDA context (do_bench's method: an estimate, warm-up
 * and timed runs each behind a write that leaves L2 cold): it returns a
 * positive, finite median no smaller than the minimum, and the runs it
 * timed wrote the same output as a direct run (so the L2 eviction buffer
 * is its own memory and the timed runs are the plan's). */
START_TEST(test_plan_time) {
  if (other_shard(133)) return;
  uint64_t rng = g_seed ^ 0x71e;
  const int64_t S = 300;
  const int32_t H = 2, D = 64;
  bsa_attn_params p;
  memset(&p, 0, sizeof p);
  p.num_qo_heads = p.num_kv_heads = H;
  p.head_dim = D;
  p.qo_len = p.kv_len = S;
  p.q_dtype = p.kv_dtype = p.o_dtype = BSA_DTYPE_BF16;
  bsa_ctx_options opt = {0};
  opt.device = BSA_DEVICE_CUDA;
  dev d;
  ck_assert_int_eq(bsa_ctx_create(&opt, &d.ctx), BSA_OK);
  const size_t n = (size_t)(S * H * D), nl = (size_t)(S * H);
  void *q = random_tensor(BSA_DTYPE_BF16, n, &rng), *k = random_tensor(BSA_DTYPE_BF16, n, &rng);
  void *v = random_tensor(BSA_DTYPE_BF16, n, &rng);
  dev_upload(&d, q, k, v, n, n, nl, 2);
  bsa_plan *plan;
  ck_assert_int_eq(bsa_plan_create_dense(d.ctx, &p, &plan), BSA_OK);
  dev_poison_run(&d, plan, n * 2, nl, 1);
  unsigned char *o1 = malloc(n * 2), *o2 = malloc(n * 2);
  ck_assert_int_eq(bsa_ctx_copy_to_host(d.ctx, o1, d.o, n * 2), BSA_OK);
  dev_poison(&d, n * 2, 0);
  double med = -1, mn = -1;
  ck_assert_msg(bsa_plan_time(plan, d.q, d.k, d.v, d.o, NULL, 1, 3, &med, &mn) == BSA_OK,
                "bsa_plan_time: %s", bsa_ctx_last_error(d.ctx));
  ck_assert_msg(isfinite(med) && med > 0 && mn > 0 && mn <= med, "median %g, min %g", med, mn);
  ck_assert_int_eq(bsa_ctx_copy_to_host(d.ctx, o2, d.o, n * 2), BSA_OK);
  ck_assert_msg(memcmp(o1, o2, n * 2) == 0, "timed runs wrote another output than a direct run");
  bsa_plan_destroy(plan);
  dev_release(&d);
  free(q), free(k), free(v), free(o1), free(o2);
}
END_TEST

/* Requests the CUDA backend cannot do fail with a message naming them. */
START_TEST(test_unsupported) {
  if (other_shard(132)) return;
  bsa_ctx *ctx;
  bsa_ctx_options opt = {0};
  opt.device = BSA_DEVICE_CUDA;
  ck_assert_int_eq(bsa_ctx_create(&opt, &ctx), BSA_OK);
  bsa_attn_params p;
  memset(&p, 0, sizeof p);
  p.num_qo_heads = p.num_kv_heads = 2;
  p.head_dim = 96;
  p.qo_len = p.kv_len = 100;
  p.q_dtype = p.kv_dtype = p.o_dtype = BSA_DTYPE_BF16;
  bsa_plan *plan = (bsa_plan *)&p;
  ck_assert_int_eq(bsa_plan_create_dense(ctx, &p, &plan), BSA_ERR_UNSUPPORTED);
  ck_assert_ptr_null(plan);
  ck_assert_msg(strstr(bsa_ctx_last_error(ctx), "head_dim = 96"), "message: %s",
                bsa_ctx_last_error(ctx));
  p.head_dim = 64;
  p.q_dtype = p.kv_dtype = p.o_dtype = BSA_DTYPE_F32;
  ck_assert_int_eq(bsa_plan_create_dense(ctx, &p, &plan), BSA_ERR_UNSUPPORTED);
  ck_assert_msg(strstr(bsa_ctx_last_error(ctx), "q_dtype = f32"), "message: %s",
                bsa_ctx_last_error(ctx));
  opt.cuda_device = 4096;
  bsa_ctx *bad = NULL;
  ck_assert_int_eq(bsa_ctx_create(&opt, &bad), BSA_ERR_NO_DEVICE);
  ck_assert_ptr_null(bad);
  ck_assert_msg(strstr(bsa_last_error(), "cuda_device = 4096"), "message: %s", bsa_last_error());
  bsa_ctx_destroy(ctx);
}
END_TEST

static Suite *gpu_suite(void) {
  Suite *s = suite_create("gpu");
  TCase *tc = tcase_create("vs_cpu");
  tcase_set_timeout(tc, 600);
  tcase_add_loop_test(tc, test_dense_grid, 0, 36);
  tcase_add_loop_test(tc, test_bsr_grid, 0, 48);
  tcase_add_loop_test(tc, test_var_grid, 0, 36);
  tcase_add_loop_test(tc, test_split_kv, 0, 4);
  tcase_add_loop_test(tc, test_wide_group, 0, 2);
  tcase_add_test(tc, test_graph_capture);
  tcase_add_loop_test(tc, test_tma_paths, 0, 20);
  tcase_add_loop_test(tc, test_schedule_threads, 0, 5);
  tcase_add_test(tc, test_plan_time);
  suite_add_tcase(s, tc);
  TCase *te = tcase_create("errors");
  tcase_add_test(te, test_unsupported);
  suite_add_tcase(s, te);
  return s;
}

/* Probes for a CUDA device in a child process, so that this process never
 * initialises CUDA before Check forks.  1 when a device is usable. */
static int have_device(void) {
  pid_t pid = fork();
  if (pid < 0) return 0;
  if (pid == 0) {
    bsa_ctx *ctx = NULL;
    bsa_ctx_options opt = {0};
    opt.device = BSA_DEVICE_CUDA;
    bsa_status st = bsa_ctx_create(&opt, &ctx);
    if (st != BSA_OK)
      fprintf(stderr, "check_gpu: skipped: %s\n", bsa_last_error());
    else
      fprintf(stderr, "check_gpu: device %s\n", bsa_ctx_device_name(ctx));
    bsa_ctx_destroy(ctx);
    _exit(st == BSA_OK ? 0 : 1);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return 0;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int main(void) {
  const char *env = getenv("BSA_TEST_SEED");
  g_seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
  fprintf(stderr, "check_gpu: BSA_TEST_SEED=%llu\n", (unsigned long long)g_seed);
  const char *shard = getenv("BSA_TEST_SHARD");
  if (shard && (sscanf(shard, "%d/%d", &g_shard, &g_nshards) != 2 || g_nshards < 1 || g_shard < 0 ||
                g_shard >= g_nshards)) {
    fprintf(stderr, "check_gpu: BSA_TEST_SHARD=%s is not k/n with 0 <= k < n\n", shard);
    return 2;
  }
  if (g_nshards > 1) fprintf(stderr, "check_gpu: shard %d of %d\n", g_shard, g_nshards);
  if (!have_device()) return 77;
  /* Every case runs each kernel family on the same inputs: generation 2
   * (wgmma, where the device and the binary have it; mma.sync elsewhere),
   * then mma.sync.  Only the one asked for when BSA_CUDA_KERNEL is set. */
  const char *given = getenv("BSA_CUDA_KERNEL");
  if (given) {
    snprintf(g_given, sizeof g_given, "%s", given);
    g_fam[0] = (family){g_given, getenv("BSA_CUDA_CTAS"), g_given};
    g_nfam = 1;
  }
  fprintf(stderr, "check_gpu: kernels");
  for (int kf = 0; kf < g_nfam; kf++) fprintf(stderr, "%s %s", kf ? "," : "", g_fam[kf].label);
  fprintf(stderr, "\n");
  SRunner *sr = srunner_create(gpu_suite());
  srunner_run_all(sr, CK_NORMAL);
  const int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
