/*
 * tools/bench_masks.c - `bsa bench --masks M.h5 --trace T.h5`: the masks of
 * a masks file timed on the trace's own q/k/v (the real workload), against
 * dense attention on the same inputs.
 *
 * Each mask record is run as a variable-block plan.  When the record has
 * permutations, q is permuted with q_perm and k/v with k_perm of the kv head
 * (all query heads of a GQA group share them), as a kernel would see them
 * after a permutation step; dense attention is timed on the same tensors.
 */
#include "config.h"

#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "bsa/trace.h"

/* Copies src [H, S, D] into dst [H, S, D] with rows permuted per kv head:
 * dst[h, t] = src[h, perm[h / group][t]] (perm NULL = identity). */
static void permute_rows(float *dst, const float *src, int64_t H, int64_t S, int64_t D,
                         int64_t group, const int32_t *perm) {
  for (int64_t h = 0; h < H; h++) {
    const int32_t *pp = perm ? perm + (h / group) * S : NULL;
    for (int64_t t = 0; t < S; t++) {
      int64_t from = pp ? pp[t] : t;
      memcpy(dst + (h * S + t) * D, src + (h * S + from) * D, sizeof(float) * (size_t)D);
    }
  }
}

static int upload(bsa_cli *cli, bsa_ctx *ctx, const float *src, size_t n, bsa_dtype dt,
                  void **dev) {
  void *h = malloc(n * bsa_dtype_size(dt));
  if (!h) return cli_error(cli, BSA_EXIT_FAIL, "out of memory for %zu values", n);
  bsa_convert(h, dt, src, BSA_DTYPE_F32, n);
  int rc = 0;
  if (bsa_ctx_alloc(ctx, n * bsa_dtype_size(dt), dev) != BSA_OK ||
      bsa_ctx_copy_to_device(ctx, *dev, h, n * bsa_dtype_size(dt)) != BSA_OK)
    rc = cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_ctx_last_error(ctx));
  free(h);
  return rc;
}

static int bench_record(bsa_cli *cli, const bench_opts *o, bsa_ctx *ctx, const char *method,
                        const bsa_trace_record *tr, const bsa_mask_record *mr) {
  if (mr->num_kv_heads != tr->num_kv_heads || mr->qo_len != tr->qo_len || mr->kv_len != tr->kv_len)
    return cli_error(cli, BSA_EXIT_FAIL,
                     "record %s: masks are for Hkv=%d, Sq=%lld, Sk=%lld but the trace has "
                     "Hkv=%d, Sq=%lld, Sk=%lld",
                     tr->name, mr->num_kv_heads, (long long)mr->qo_len, (long long)mr->kv_len,
                     tr->num_kv_heads, (long long)tr->qo_len, (long long)tr->kv_len);
  if (!tr->v)
    return cli_error(cli, BSA_EXIT_FAIL, "record %s: the trace has no v dataset to time with",
                     tr->name);
  const int64_t Hq = tr->num_qo_heads, Hkv = tr->num_kv_heads, D = tr->head_dim;
  const int64_t g = Hq / Hkv;
  const size_t nq = (size_t)(Hq * tr->qo_len * D), nkv = (size_t)(Hkv * tr->kv_len * D);
  float *qp = malloc(sizeof(float) * nq), *kp = malloc(sizeof(float) * nkv);
  float *vp = malloc(sizeof(float) * nkv);
  if (!qp || !kp || !vp) {
    free(qp), free(kp), free(vp);
    return cli_error(cli, BSA_EXIT_FAIL, "record %s: out of memory", tr->name);
  }
  permute_rows(qp, tr->q, Hq, tr->qo_len, D, g, mr->q_perm);
  permute_rows(kp, tr->k, Hkv, tr->kv_len, D, 1, mr->k_perm);
  permute_rows(vp, tr->v, Hkv, tr->kv_len, D, 1, mr->k_perm);

  bsa_attn_params p;
  memset(&p, 0, sizeof p);
  p.num_qo_heads = (int32_t)Hq;
  p.num_kv_heads = (int32_t)Hkv;
  p.head_dim = (int32_t)D;
  p.qo_len = tr->qo_len;
  p.kv_len = tr->kv_len;
  p.q_dtype = p.kv_dtype = p.o_dtype = o->dtype;
  p.layout = BSA_LAYOUT_HND;
  p.sm_scale = tr->sm_scale;
  /* Causal masking is over token positions, which a permutation scrambles:
   * permuted records are timed as the non-causal attention they describe. */
  p.causal = tr->causal && !mr->q_perm && !mr->k_perm;

  void *dq = NULL, *dk = NULL, *dv = NULL, *dout = NULL;
  int rc = upload(cli, ctx, qp, nq, o->dtype, &dq);
  if (!rc) rc = upload(cli, ctx, kp, nkv, o->dtype, &dk);
  if (!rc) rc = upload(cli, ctx, vp, nkv, o->dtype, &dv);
  free(qp), free(kp), free(vp);
  if (!rc && bsa_ctx_alloc(ctx, nq * bsa_dtype_size(o->dtype), &dout) != BSA_OK)
    rc = cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_ctx_last_error(ctx));

  bsa_plan *dense = NULL, *plan = NULL;
  double dense_ms = 0, ms = 0;
  if (!rc && bsa_plan_create_dense(ctx, &p, &dense) != BSA_OK)
    rc = cli_error(cli, BSA_EXIT_FAIL, "record %s: %s", tr->name, bsa_ctx_last_error(ctx));
  bsa_var_desc vd = {mr->num_block_rows, mr->num_block_cols, mr->block_mask_map, mr->block_row_sz,
                     mr->block_col_sz};
  if (!rc && bsa_plan_create_var(ctx, &p, &vd, &plan) != BSA_OK)
    rc = cli_error(cli, BSA_EXIT_FAIL, "record %s: %s", tr->name, bsa_ctx_last_error(ctx));
  if (!rc) {
    cli_progress(cli, "bench: %s dense", tr->name);
    rc = bench_time_plan(cli, dense, o, dq, dk, dv, dout, &dense_ms);
  }
  if (!rc) {
    cli_progress(cli, "bench: %s masks", tr->name);
    rc = bench_time_plan(cli, plan, o, dq, dk, dv, dout, &ms);
  }
  if (!rc) {
    char grid[64];
    snprintf(grid, sizeof grid, "%lldx%lld", (long long)mr->num_block_rows,
             (long long)mr->num_block_cols);
    bench_row r;
    bench_row_init(&r, o, "masks", &p, plan, ms, dense_ms);
    r.record = tr->name;
    r.method = method;
    r.grid = grid;
    bench_emit(cli, o, &r);
  }
  bsa_plan_destroy(plan);
  bsa_plan_destroy(dense);
  bsa_ctx_free(ctx, dq);
  bsa_ctx_free(ctx, dk);
  bsa_ctx_free(ctx, dv);
  bsa_ctx_free(ctx, dout);
  return rc;
}

int bench_masks(bsa_cli *cli, const bench_opts *o) {
  bsa_masks *masks = NULL;
  bsa_trace *trace = NULL;
  if (bsa_masks_open(o->masks_path, &masks) != BSA_OK)
    return cli_error(cli, BSA_EXIT_FAIL, "--masks %s: %s", o->masks_path, bsa_last_error());
  if (bsa_trace_open(o->trace_path, &trace) != BSA_OK) {
    bsa_masks_close(masks);
    return cli_error(cli, BSA_EXIT_FAIL, "--trace %s: %s", o->trace_path, bsa_last_error());
  }
  cli_input(cli, "masks", o->masks_path);
  cli_input(cli, "trace", o->trace_path);
  const char *method = bsa_masks_method(masks);
  cli_param(cli, "method", "%s", method);

  bsa_ctx_options co;
  memset(&co, 0, sizeof co);
  co.device = o->device;
  co.num_threads = cli->threads;
  bsa_ctx *ctx = NULL;
  int rc = 0;
  if (bsa_ctx_create(&co, &ctx) != BSA_OK)
    rc = cli_error(cli, BSA_EXIT_FAIL, "%s", bsa_last_error());
  else
    cli_device(cli, bsa_ctx_device_name(ctx), bsa_ctx_device_driver(ctx));
  if (!rc) bench_print_header(o);
  int64_t done = 0;
  for (int64_t i = 0; !rc && i < bsa_masks_num_records(masks); i++) {
    const char *name = bsa_masks_record_name(masks, i);
    if (o->records_glob && fnmatch(o->records_glob, name, 0) != 0) continue;
    bsa_mask_record *mr = NULL;
    bsa_trace_record *tr = NULL;
    if (bsa_masks_read_record(masks, name, &mr) != BSA_OK)
      rc = cli_error(cli, BSA_EXIT_FAIL, "--masks %s: %s", o->masks_path, bsa_last_error());
    else if (bsa_trace_read_record(trace, name, &tr) != BSA_OK)
      rc = cli_error(cli, BSA_EXIT_FAIL, "--trace %s: record %s: %s", o->trace_path, name,
                     bsa_last_error());
    else
      rc = bench_record(cli, o, ctx, method, tr, mr);
    bsa_mask_record_free(mr);
    bsa_trace_record_free(tr);
    done++;
  }
  cli_progress_done(cli);
  if (!rc && done == 0)
    rc = cli_error(cli, BSA_EXIT_FAIL, "--records '%s' matches no record of %s",
                   o->records_glob ? o->records_glob : "*", o->masks_path);
  bsa_ctx_destroy(ctx);
  bsa_trace_close(trace);
  bsa_masks_close(masks);
  return rc;
}
