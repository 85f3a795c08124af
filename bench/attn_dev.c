/*
 * bench/attn_dev.c - development benchmark of the CUDA attention kernels.
 *
 * Times one plan kind at one shape through the public API (bsa_plan_time:
 * triton do_bench's method, --reps a minimum), on random bf16/f16 data,
 * and reports the host plan time (variable blocks: best and median of
 * --plan-reps builds, default 5, and the best of the same plan on a CPU
 * context, which is the work-list compiler with its longest-first sort),
 * the kernel time, effective TFLOP/s (4 * D * visible pairs / time) and,
 * in the same process, dense attention at the same shape.  Masks follow
 * bench/peers.py: BSR maps random per kv head with the diagonal kept;
 * variable blocks are random partitions per head (uniform cut points) with
 * a random block map.
 *
 *   make bench/attn_dev
 *   bench/attn_dev --layout var --heads 32 --seq 32768 --blocks 100x100 \
 *                  --density 0.1 --reps 20
 *
 * BSR blocks are --block square, or --row-block rows by --block keys
 * (--row-block 64 gives items of 64 query rows: one math warpgroup of a
 * wgmma CTA works, the other idles).
 *
 * Output: one JSON object per line on stdout.
 *
 * --runs N instead runs the plan (dense when --layout dense) N times
 * without timing and prints one line saying so, for external profilers,
 * e.g.
 *   ncu --kernel-name regex:attn_fwd_ws --launch-skip 1 --launch-count 1 \
 *       --section SourceCounters --section WarpStateStats --page source \
 *       --print-source sass --csv bench/attn_dev --layout bsr --runs 3
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bsa.h"
#ifdef BSA_PROFILE
#include "../kernels/kernels.h"
#endif

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng_state = 0x1234567887654321ull;
static uint64_t rnd_u64(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double rnd_unit(void) { return (double)(rnd_u64() >> 11) * (1.0 / 9007199254740992.0); }

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Random partition of total into nb positive parts (uniform cut points). */
static void partition(int32_t *sz, int64_t nb, int64_t total) {
  int64_t *cut = malloc(sizeof(int64_t) * (size_t)(nb + 1));
  for (;;) {
    cut[0] = 0;
    cut[nb] = total;
    for (int64_t i = 1; i < nb; i++) cut[i] = 1 + (int64_t)(rnd_unit() * (double)(total - 1));
    qsort(cut + 1, (size_t)(nb - 1), sizeof *cut, cmp_i64);
    int ok = 1;
    for (int64_t i = 0; i < nb; i++) ok &= cut[i + 1] > cut[i];
    if (ok) break;
  }
  for (int64_t i = 0; i < nb; i++) sz[i] = (int32_t)(cut[i + 1] - cut[i]);
  free(cut);
}

static void die(const char *what, bsa_ctx *ctx) {
  fprintf(stderr, "attn_dev: %s: %s\n", what, ctx ? bsa_ctx_last_error(ctx) : bsa_last_error());
  exit(1);
}

#ifdef BSA_PROFILE
/* Profiling builds: one more run of plan with the kernel's clock stamps on,
 * written to path as the used words of each stream (BSA__PROF_STREAMS
 * streams of 8 header words and 2 words per record). */
static void prof_dump(bsa_ctx *ctx, bsa_plan *plan, const void *q, const void *k, const void *v,
                      void *o, const char *path) {
  const size_t words = (size_t)BSA__PROF_STREAMS * BSA__PROF_WORDS;
  unsigned long long *h = calloc(words, sizeof *h);
  void *d = NULL;
  if (!h || bsa_ctx_alloc(ctx, words * sizeof *h, &d) ||
      bsa_ctx_copy_to_device(ctx, d, h, words * sizeof *h))
    die("profile buffer", ctx);
  bsa__cuda_prof = d;
  if (bsa_plan_run(plan, q, k, v, o, NULL) || bsa_ctx_synchronize(ctx)) die("profile run", ctx);
  bsa__cuda_prof = NULL;
  if (bsa_ctx_copy_to_host(ctx, h, d, words * sizeof *h)) die("profile copy", ctx);
  FILE *f = fopen(path, "wb");
  if (!f) {
    fprintf(stderr, "attn_dev: cannot write %s\n", path);
    exit(1);
  }
  for (int s = 0; s < BSA__PROF_STREAMS; s++) {
    const unsigned long long *p = h + (size_t)s * BSA__PROF_WORDS;
    fwrite(p, sizeof *p, 8 + 2 * (size_t)p[0], f);
  }
  fclose(f);
  bsa_ctx_free(ctx, d);
  free(h);
}
#endif

int main(int argc, char **argv) {
  const char *layout = "dense";
  int H = 32, Hkv = 0, D = 128, causal = 0, reps = 20, mb = 100, nb = 100, plan_reps = 5, runs = 0;
  int64_t S = 8192, B = 128, RB = 0; /* RB: BSR rows per block (0: B) */
  double density = 0.1;
  bsa_dtype dt = BSA_DTYPE_BF16;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
    if (!strcmp(a, "--layout"))
      layout = v, i++;
    else if (!strcmp(a, "--heads"))
      H = atoi(v), i++;
    else if (!strcmp(a, "--kv-heads"))
      Hkv = atoi(v), i++;
    else if (!strcmp(a, "--head-dim"))
      D = atoi(v), i++;
    else if (!strcmp(a, "--seq"))
      S = atoll(v), i++;
    else if (!strcmp(a, "--block"))
      B = atoll(v), i++;
    else if (!strcmp(a, "--row-block"))
      RB = atoll(v), i++;
    else if (!strcmp(a, "--blocks")) {
      if (sscanf(v, "%dx%d", &mb, &nb) != 2) {
        fprintf(stderr, "attn_dev: --blocks %s is not MBxNB\n", v);
        return 2;
      }
      i++;
    } else if (!strcmp(a, "--density"))
      density = atof(v), i++;
    else if (!strcmp(a, "--causal"))
      causal = 1;
    else if (!strcmp(a, "--reps"))
      reps = atoi(v), i++;
    else if (!strcmp(a, "--runs"))
      runs = atoi(v) > 0 ? atoi(v) : 1, i++;
    else if (!strcmp(a, "--plan-reps"))
      plan_reps = atoi(v) > 0 ? atoi(v) : 1, i++;
    else if (!strcmp(a, "--dtype")) {
      if (bsa_dtype_parse(v, &dt) != BSA_OK) {
        fprintf(stderr, "attn_dev: --dtype %s is not f16 or bf16\n", v);
        return 2;
      }
      i++;
    } else {
      fprintf(stderr, "attn_dev: unknown option %s\n", a);
      return 2;
    }
  }
  if (Hkv == 0) Hkv = H;
  if (RB <= 0) RB = B;
  bsa_ctx *ctx;
  bsa_ctx_options opt = {0};
  opt.device = BSA_DEVICE_CUDA;
  if (bsa_ctx_create(&opt, &ctx) != BSA_OK) die("context", NULL);

  bsa_attn_params p;
  memset(&p, 0, sizeof p);
  p.num_qo_heads = H;
  p.num_kv_heads = Hkv;
  p.head_dim = D;
  p.qo_len = p.kv_len = S;
  p.q_dtype = p.kv_dtype = p.o_dtype = dt;
  p.causal = causal;

  const size_t nq = (size_t)S * H * D, nkv = (size_t)S * Hkv * D;
  uint16_t *host = malloc(sizeof(uint16_t) * (nq > nkv ? nq : nkv));
  void *q, *k, *v, *o;
  if (bsa_ctx_alloc(ctx, nq * 2, &q) || bsa_ctx_alloc(ctx, nkv * 2, &k) ||
      bsa_ctx_alloc(ctx, nkv * 2, &v) || bsa_ctx_alloc(ctx, nq * 2, &o))
    die("alloc", ctx);
  void *bufs[3] = {q, k, v};
  size_t ns[3] = {nq, nkv, nkv};
  for (int b = 0; b < 3; b++) {
    for (size_t i = 0; i < ns[b]; i++) {
      float x = (float)(rnd_unit() * 4.0 - 2.0);
      host[i] = dt == BSA_DTYPE_BF16 ? bsa_f32_to_bf16(x) : bsa_f32_to_f16(x);
    }
    if (bsa_ctx_copy_to_device(ctx, bufs[b], host, ns[b] * 2)) die("copy", ctx);
  }

  bsa_plan *dense = NULL, *plan = NULL;
  if (bsa_plan_create_dense(ctx, &p, &dense) != BSA_OK) die("dense plan", ctx);
  double t0 = 0, plan_ms = 0, plan_median_ms = 0, plan_cpu_ms = 0;
  int32_t *indptr = NULL, *indices = NULL, *rsz = NULL, *csz = NULL;
  uint8_t *map = NULL;
  if (!strcmp(layout, "bsr")) {
    const int64_t MB = (S + RB - 1) / RB, NB = (S + B - 1) / B;
    indptr = malloc(sizeof(int32_t) * (size_t)(Hkv * (MB + 1)));
    indices = malloc(sizeof(int32_t) * (size_t)(Hkv * MB * NB));
    int64_t nnz = 0;
    for (int h = 0; h < Hkv; h++) {
      indptr[h * (MB + 1)] = (int32_t)nnz;
      for (int64_t i = 0; i < MB; i++) {
        for (int64_t j = 0; j < NB; j++)
          if (j == i * RB / B || rnd_unit() < density) indices[nnz++] = (int32_t)j;
        indptr[h * (MB + 1) + i + 1] = (int32_t)nnz;
      }
    }
    bsa_bsr_desc d = {RB, B, indptr, indices, NULL, 1};
    t0 = now_s();
    if (bsa_plan_create_bsr(ctx, &p, &d, &plan) != BSA_OK) die("bsr plan", ctx);
    plan_ms = (now_s() - t0) * 1e3;
  } else if (!strcmp(layout, "var")) {
    rsz = malloc(sizeof(int32_t) * (size_t)(Hkv * mb));
    csz = malloc(sizeof(int32_t) * (size_t)(Hkv * nb));
    map = malloc((size_t)Hkv * mb * nb);
    for (int h = 0; h < Hkv; h++) {
      partition(rsz + (int64_t)h * mb, mb, S);
      partition(csz + (int64_t)h * nb, nb, S);
      for (int64_t i = 0; i < (int64_t)mb * nb; i++)
        map[(int64_t)h * mb * nb + i] = rnd_unit() < density;
    }
    bsa_var_desc d = {mb, nb, map, rsz, csz};
    /* Plan cost: best and median of --plan-reps builds (each replaces
     * the last plan, as when masks change every layer). */
    double *pt = malloc(sizeof(double) * (size_t)plan_reps);
    for (int r = 0; r < plan_reps; r++) {
      bsa_plan *tmp = NULL;
      t0 = now_s();
      if (bsa_plan_create_var(ctx, &p, &d, &tmp) != BSA_OK) die("var plan", ctx);
      pt[r] = (now_s() - t0) * 1e3;
      if (plan) bsa_plan_destroy(plan);
      plan = tmp;
    }
    qsort(pt, (size_t)plan_reps, sizeof *pt, cmp_double);
    plan_ms = pt[0];
    plan_median_ms = pt[plan_reps / 2];
    free(pt);
    double best = 1e30;
    /* The host work-list compiler alone: the same plan on a CPU context. */
    bsa_ctx *cpu = NULL;
    if (bsa_ctx_create(NULL, &cpu) != BSA_OK) die("cpu context", NULL);
    best = 1e30;
    for (int r = 0; r < plan_reps; r++) {
      bsa_plan *tmp = NULL;
      t0 = now_s();
      if (bsa_plan_create_var(cpu, &p, &d, &tmp) != BSA_OK) die("cpu var plan", cpu);
      double ms = (now_s() - t0) * 1e3;
      if (ms < best) best = ms;
      bsa_plan_destroy(tmp);
    }
    plan_cpu_ms = best;
    bsa_ctx_destroy(cpu);
  }

  if (runs > 0) { /* for profilers: the plan alone, untimed */
    for (int r = 0; r < runs; r++)
      if (bsa_plan_run(plan ? plan : dense, q, k, v, o, NULL) != BSA_OK) die("run", ctx);
    if (bsa_ctx_synchronize(ctx) != BSA_OK) die("synchronize", ctx);
    printf("attn_dev: %d runs of the %s plan\n", runs, plan ? layout : "dense");
  } else {
    double dense_ms = 0, ms = 0;
    if (bsa_plan_time(dense, q, k, v, o, NULL, 3, reps, &dense_ms, NULL) != BSA_OK)
      die("dense time", ctx);
    if (plan && bsa_plan_time(plan, q, k, v, o, NULL, 3, reps, &ms, NULL) != BSA_OK)
      die("time", ctx);
#ifdef BSA_PROFILE
    if (getenv("BSA_PROF_OUT"))
      prof_dump(ctx, plan ? plan : dense, q, k, v, o, getenv("BSA_PROF_OUT"));
#endif
    bsa_plan_info di, si;
    bsa_plan_get_info(dense, &di);
    const double dense_tf = bsa_plan_flops(dense) / (dense_ms * 1e-3) / 1e12;
    printf(
        "{\"device\":\"%s\",\"layout\":\"dense\",\"heads\":%d,\"kv_heads\":%d,\"seq\":%lld,"
        "\"head_dim\":%d,\"dtype\":\"%s\",\"causal\":%d,\"time_ms\":%.4f,\"tflops\":%.1f,"
        "\"items\":%lld}\n",
        bsa_ctx_device_name(ctx), H, Hkv, (long long)S, D, bsa_dtype_name(dt), causal, dense_ms,
        dense_tf, (long long)di.num_work_items);
    if (plan) {
      bsa_plan_get_info(plan, &si);
      const double tf = bsa_plan_flops(plan) / (ms * 1e-3) / 1e12;
      /* The keys of the layout that ran: BSR its block shape and the one
       * plan build; variable blocks their grid and the plan statistics. */
      char shape[160];
      if (!strcmp(layout, "bsr"))
        snprintf(shape, sizeof shape, "\"block\":%lld,\"row_block\":%lld,\"plan_ms\":%.3f",
                 (long long)B, (long long)RB, plan_ms);
      else
        snprintf(shape, sizeof shape,
                 "\"blocks\":\"%dx%d\",\"plan_ms\":%.3f,\"plan_median_ms\":%.3f,"
                 "\"plan_cpu_ms\":%.3f",
                 mb, nb, plan_ms, plan_median_ms, plan_cpu_ms);
      printf(
          "{\"device\":\"%s\",\"layout\":\"%s\",\"heads\":%d,\"kv_heads\":%d,\"seq\":%lld,"
          "\"head_dim\":%d,\"dtype\":\"%s\",\"causal\":%d,%s,\"density_req\":%.3f,"
          "\"density\":%.4f,\"time_ms\":%.4f,\"dense_time_ms\":%.4f,\"speedup\":%.2f,"
          "\"tflops_effective\":%.1f,\"vs_dense\":%.3f,\"items\":%lld,\"segments\":%lld}\n",
          bsa_ctx_device_name(ctx), layout, H, Hkv, (long long)S, D, bsa_dtype_name(dt), causal,
          shape, density, si.density, ms, dense_ms, dense_ms / ms, tf, tf / dense_tf,
          (long long)si.num_work_items, (long long)si.num_segments);
    }
  }
  bsa_plan_destroy(plan);
  bsa_plan_destroy(dense);
  bsa_ctx_free(ctx, q), bsa_ctx_free(ctx, k), bsa_ctx_free(ctx, v), bsa_ctx_free(ctx, o);
  bsa_ctx_destroy(ctx);
  free(host), free(indptr), free(indices), free(rsz), free(csz), free(map);
  return 0;
}
