/*
 * tools/bench_random.c - `bsa bench` on random inputs and random block maps.
 *
 * BSR: one map per kv head; block row i keeps its diagonal block and
 * round(density * NB) - 1 others drawn uniformly.  Variable blocks: per kv
 * head a random partition of the sequence into MB row blocks and NB column
 * blocks (sizes at least 1) and round(density * NB) random blocks per row.
 * Each map draws from a stream of its own (map_seed), so --density 0.1
 * gives the same map alone as in --density 0.5,0.1.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* The random stream of one map: from the seed, the layout (0 BSR, 1
 * variable blocks) and the density alone, not from the maps drawn before
 * it in the same command. */
static uint64_t map_seed(uint64_t seed, int layout, double density) {
  uint64_t bits;
  memcpy(&bits, &density, sizeof bits);
  uint64_t s = seed ^ (0xd1b54a32d192ed03ull * (uint64_t)(layout + 1));
  s = bench_rand(&s) ^ bits;
  return bench_rand(&s);
}

/* Picks keep distinct values of [0, n) into out, always including must
 * (when must >= 0).  Partial Fisher-Yates over a scratch permutation. */
static void pick(int32_t *out, int64_t keep, int64_t n, int64_t must, int32_t *perm,
                 uint64_t *rng) {
  for (int64_t i = 0; i < n; i++) perm[i] = (int32_t)i;
  int64_t start = 0;
  if (must >= 0) {
    perm[must] = 0;
    perm[0] = (int32_t)must;
    start = 1;
  }
  for (int64_t i = start; i < keep; i++) {
    int64_t j = i + (int64_t)(bench_rand(rng) % (uint64_t)(n - i));
    int32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  memcpy(out, perm, sizeof(int32_t) * (size_t)keep);
}

static void random_sizes(int32_t *sz, int64_t nb, int64_t total, uint64_t *rng) {
  /* nb - 1 distinct cut points in [1, total - 1], sorted. */
  int64_t *cuts = malloc(sizeof(int64_t) * (size_t)(nb + 1));
  char *used = calloc((size_t)total + 1, 1);
  cuts[0] = 0;
  for (int64_t i = 1; i < nb; i++) {
    int64_t c;
    do c = 1 + (int64_t)(bench_rand(rng) % (uint64_t)(total - 1));
    while (used[c]);
    used[c] = 1;
  }
  int64_t k = 1;
  for (int64_t c = 1; c < total; c++)
    if (used[c]) cuts[k++] = c;
  cuts[nb] = total;
  for (int64_t i = 0; i < nb; i++) sz[i] = (int32_t)(cuts[i + 1] - cuts[i]);
  free(cuts);
  free(used);
}

static int64_t keep_count(double density, int64_t nb) {
  int64_t keep = (int64_t)llround(density * (double)nb);
  if (keep < 1) keep = 1;
  if (keep > nb) keep = nb;
  return keep;
}

int bench_random(bsa_cli *cli, const bench_opts *o) {
  bsa_ctx_options co;
  memset(&co, 0, sizeof co);
  co.device = o->device;
  co.num_threads = cli->threads;
  bsa_ctx *ctx = NULL;
  if (bsa_ctx_create(&co, &ctx) != BSA_OK)
    return cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_last_error());
  cli_device(cli, bsa_ctx_device_name(ctx), bsa_ctx_device_driver(ctx));

  bsa_attn_params p;
  memset(&p, 0, sizeof p);
  p.num_qo_heads = o->heads;
  p.num_kv_heads = o->kv_heads;
  p.head_dim = o->head_dim;
  p.qo_len = p.kv_len = o->seq;
  p.q_dtype = p.kv_dtype = p.o_dtype = o->dtype;
  p.causal = o->causal;
  p.layout = o->qkv_layout;

  /* Random normal inputs, generated on the host in the chosen dtype. */
  const size_t nq = (size_t)o->seq * (size_t)o->heads * (size_t)o->head_dim;
  const size_t nkv = (size_t)o->seq * (size_t)o->kv_heads * (size_t)o->head_dim;
  const size_t es = bsa_dtype_size(o->dtype);
  int rc = BSA_EXIT_OK;
  void *dq = NULL, *dk = NULL, *dv = NULL, *dout = NULL;
  uint64_t rng = o->seed;
  {
    size_t nmax = nq > nkv ? nq : nkv;
    float *f = malloc(sizeof(float) * nmax);
    void *h = malloc(es * nmax);
    if (!f || !h) {
      free(f);
      free(h);
      bsa_ctx_destroy(ctx);
      return cli_error(cli, BSA_EXIT_FAIL, "out of memory for %zu inputs", nmax);
    }
    void **dst[3] = {&dq, &dk, &dv};
    for (int t = 0; t < 3 && rc == 0; t++) {
      size_t n = t == 0 ? nq : nkv;
      for (size_t i = 0; i < n; i += 2) {
        double u = ((double)(bench_rand(&rng) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
        double w = (double)(bench_rand(&rng) >> 11) * (1.0 / 9007199254740992.0);
        double r = sqrt(-2.0 * log(u));
        f[i] = (float)(r * cos(6.283185307179586 * w));
        if (i + 1 < n) f[i + 1] = (float)(r * sin(6.283185307179586 * w));
      }
      bsa_convert(h, o->dtype, f, BSA_DTYPE_F32, n);
      if (bsa_ctx_alloc(ctx, n * es, dst[t]) != BSA_OK ||
          bsa_ctx_copy_to_device(ctx, *dst[t], h, n * es) != BSA_OK)
        rc = cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_ctx_last_error(ctx));
    }
    free(f);
    free(h);
    if (rc == 0 && bsa_ctx_alloc(ctx, nq * es, &dout) != BSA_OK)
      rc = cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_ctx_last_error(ctx));
  }

  bsa_plan *dense = NULL;
  double dense_ms = 0;
  if (rc == 0) {
    cli_progress(cli, "bench: dense attention");
    if (bsa_plan_create_dense(ctx, &p, &dense) != BSA_OK)
      rc = cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_ctx_last_error(ctx));
    else
      rc = bench_time_plan(cli, dense, o, dq, dk, dv, dout, &dense_ms);
  }
  bench_print_header(o);
  if (rc == 0) {
    bench_row r;
    bench_row_init(&r, o, "dense", &p, dense, dense_ms, dense_ms);
    bench_emit(cli, o, &r);
  }
  bsa_plan_destroy(dense);

  const int64_t Hkv = o->kv_heads;
  for (int li = 0; li < 2 && rc == 0; li++) {
    if ((li == 0 && !o->do_bsr) || (li == 1 && !o->do_var)) continue;
    for (int di = 0; di < o->n_densities && rc == 0; di++) {
      const double dens = o->densities[di];
      uint64_t mrng = map_seed(o->seed, li, dens);
      bsa_plan *plan = NULL;
      bsa_status st;
      char grid[64] = "";
      cli_progress(cli, "bench: %s density %.3g", li ? "var" : "bsr", dens);
      if (li == 0) {
        const int64_t B = o->block;
        const int64_t MB = (o->seq + B - 1) / B, NB = MB;
        const int64_t keep = keep_count(dens, NB);
        int32_t *indptr = malloc(sizeof(int32_t) * (size_t)(Hkv * (MB + 1)));
        int32_t *indices = malloc(sizeof(int32_t) * (size_t)(Hkv * MB * keep));
        int32_t *perm = malloc(sizeof(int32_t) * (size_t)NB);
        int64_t nnz = 0;
        for (int64_t h = 0; h < Hkv; h++) {
          indptr[h * (MB + 1)] = (int32_t)nnz;
          for (int64_t i = 0; i < MB; i++) {
            pick(indices + nnz, keep, NB, i < NB ? i : -1, perm, &mrng);
            nnz += keep;
            indptr[h * (MB + 1) + i + 1] = (int32_t)nnz;
          }
        }
        bsa_bsr_desc d = {B, B, indptr, indices, NULL, 1};
        st = bsa_plan_create_bsr(ctx, &p, &d, &plan);
        free(indptr);
        free(indices);
        free(perm);
      } else {
        const int64_t MB = o->mb, NB = o->nb;
        const int64_t keep = keep_count(dens, NB);
        uint8_t *map = calloc((size_t)(Hkv * MB * NB), 1);
        int32_t *rs = malloc(sizeof(int32_t) * (size_t)(Hkv * MB));
        int32_t *cs = malloc(sizeof(int32_t) * (size_t)(Hkv * NB));
        int32_t *perm = malloc(sizeof(int32_t) * (size_t)NB);
        int32_t *sel = malloc(sizeof(int32_t) * (size_t)NB);
        for (int64_t h = 0; h < Hkv; h++) {
          random_sizes(rs + h * MB, MB, o->seq, &mrng);
          random_sizes(cs + h * NB, NB, o->seq, &mrng);
          for (int64_t i = 0; i < MB; i++) {
            pick(sel, keep, NB, -1, perm, &mrng);
            for (int64_t k = 0; k < keep; k++) map[(h * MB + i) * NB + sel[k]] = 1;
          }
        }
        bsa_var_desc d = {MB, NB, map, rs, cs};
        double t0 = bench_now_ms();
        st = bsa_plan_create_var(ctx, &p, &d, &plan);
        double plan_ms = bench_now_ms() - t0;
        if (st == BSA_OK) cli_metric(cli, "plan_ms", plan_ms, NULL, -1, NULL);
        snprintf(grid, sizeof grid, "%lldx%lld", (long long)MB, (long long)NB);
        free(map);
        free(rs);
        free(cs);
        free(perm);
        free(sel);
      }
      if (st != BSA_OK) {
        rc = cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_ctx_last_error(ctx));
        break;
      }
      double ms = 0;
      rc = bench_time_plan(cli, plan, o, dq, dk, dv, dout, &ms);
      if (rc == 0) {
        bench_row r;
        bench_row_init(&r, o, li ? "var" : "bsr", &p, plan, ms, dense_ms);
        r.density_target = dens;
        r.block = li ? 0 : o->block;
        r.grid = li ? grid : NULL;
        bench_emit(cli, o, &r);
      }
      bsa_plan_destroy(plan);
    }
  }
  cli_progress_done(cli);
  bsa_ctx_free(ctx, dq);
  bsa_ctx_free(ctx, dk);
  bsa_ctx_free(ctx, dv);
  bsa_ctx_free(ctx, dout);
  bsa_ctx_destroy(ctx);
  return rc;
}
