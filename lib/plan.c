/*
 * lib/plan.c - plan creation (validate, compile the work list, prepare the
 * backend), run dispatch and plan facts.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static bsa_status plan_create(bsa_ctx *ctx, const bsa_attn_params *params, const bsa_bsr_desc *bsr,
                              const bsa_var_desc *var, bsa_plan **out) {
  if (!out) return bsa__fail(ctx, BSA_ERR_INVALID_ARG, "plan: out is NULL");
  *out = NULL;
  if (!ctx) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "plan: ctx is NULL");
  bsa__clear_error(ctx);
  bsa_attn_params p;
  bsa_status st = bsa__validate_params(ctx, params, &p);
  if (st != BSA_OK) return st;
  int64_t nnz = 0;
  if (bsr && (st = bsa__validate_bsr(ctx, &p, bsr, &nnz)) != BSA_OK) return st;
  if (var && (st = bsa__validate_var(ctx, &p, var)) != BSA_OK) return st;

  bsa_plan *plan = calloc(1, sizeof *plan);
  if (!plan) return bsa__fail(ctx, BSA_ERR_NOMEM, "plan: out of memory");
  plan->ctx = ctx;
  plan->p = p;
  plan->group = p.num_qo_heads / p.num_kv_heads;
  if (bsr) {
    plan->R = bsr->R;
    plan->C = bsr->C;
    if (bsr->mask && nnz > 0) {
      plan->mask_bytes = nnz * bsr->R * bsr->C;
      plan->mask = malloc((size_t)plan->mask_bytes);
      if (!plan->mask) {
        long long bytes = (long long)plan->mask_bytes;
        free(plan);
        return bsa__fail(ctx, BSA_ERR_NOMEM, "plan: out of memory copying the %lld-byte mask",
                         bytes);
      }
      memcpy(plan->mask, bsr->mask, (size_t)plan->mask_bytes);
    }
  }
  int64_t tile_q = BSA__CPU_TILE_Q;
#ifdef BSA_HAVE_CUDA
  if (ctx->device == BSA_DEVICE_CUDA) tile_q = bsa__cuda_tile_q(plan);
#endif
  st = bsa__worklist_build(plan, bsr, var, tile_q, ctx->device != BSA_DEVICE_CUDA);
#ifdef BSA_HAVE_CUDA
  if (st == BSA_OK && ctx->device == BSA_DEVICE_CUDA) st = bsa__cuda_plan_prepare(plan);
#endif
  if (st != BSA_OK) {
    bsa_plan_destroy(plan);
    return st;
  }
  *out = plan;
  return BSA_OK;
}

bsa_status bsa_plan_create_dense(bsa_ctx *ctx, const bsa_attn_params *params, bsa_plan **out) {
  return plan_create(ctx, params, NULL, NULL, out);
}

bsa_status bsa_plan_create_bsr(bsa_ctx *ctx, const bsa_attn_params *params, const bsa_bsr_desc *bsr,
                               bsa_plan **out) {
  if (!bsr) {
    if (out) *out = NULL;
    return bsa__fail(ctx, BSA_ERR_INVALID_ARG, "bsa_plan_create_bsr: bsr is NULL");
  }
  return plan_create(ctx, params, bsr, NULL, out);
}

bsa_status bsa_plan_create_var(bsa_ctx *ctx, const bsa_attn_params *params, const bsa_var_desc *var,
                               bsa_plan **out) {
  if (!var) {
    if (out) *out = NULL;
    return bsa__fail(ctx, BSA_ERR_INVALID_ARG, "bsa_plan_create_var: var is NULL");
  }
  return plan_create(ctx, params, NULL, var, out);
}

void bsa_plan_destroy(bsa_plan *plan) {
  if (!plan) return;
  if (plan->backend_free) plan->backend_free(plan);
  free(plan->items);
  free(plan->segs);
  free(plan->mask);
  free(plan);
}

bsa_status bsa_plan_run(bsa_plan *plan, const void *q, const void *k, const void *v, void *o,
                        float *lse) {
  if (!plan) return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "bsa_plan_run: plan is NULL");
  if (!q || !k || !v || !o)
    return bsa__fail(plan->ctx, BSA_ERR_INVALID_ARG, "bsa_plan_run: %s is NULL",
                     !q   ? "q"
                     : !k ? "k"
                     : !v ? "v"
                          : "o");
#ifdef BSA_HAVE_CUDA
  if (plan->ctx->device == BSA_DEVICE_CUDA) return bsa__cuda_run(plan, q, k, v, o, lse);
#endif
  return bsa__cpu_run(plan, q, k, v, o, lse);
}

bsa_status bsa_plan_get_info(const bsa_plan *plan, bsa_plan_info *info) {
  if (!plan || !info)
    return bsa__fail(NULL, BSA_ERR_INVALID_ARG, "bsa_plan_get_info: %s is NULL",
                     !plan ? "plan" : "info");
  *info = plan->info;
  return BSA_OK;
}

double bsa_plan_flops(const bsa_plan *plan) {
  return plan ? 4.0 * plan->p.head_dim * (double)plan->info.visible_pairs : 0.0;
}

/* Slopes as in the ALiBi paper: for n heads rounded down to a power of two,
 * 2^(-8 (h+1) / n); extra heads take the odd terms of the series for 2n. */
float bsa_alibi_slope(int32_t h, int32_t num_heads) {
  int32_t n = 1;
  while (n * 2 <= num_heads) n *= 2;
  if (h < n) return (float)pow(2.0, -8.0 * (h + 1) / n);
  return (float)pow(2.0, -4.0 * (2 * (h - n) + 1) / n);
}
