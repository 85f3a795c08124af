/*
 * lib/validate.c - checks of attention parameters and sparsity descriptions.
 *
 * Every message names the argument, the offending value and the limit, so
 * a user can fix the call without reading the source.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define FAIL(...) bsa__fail(ctx, BSA_ERR_INVALID_ARG, __VA_ARGS__)

static int valid_dtype(bsa_dtype d) {
  return d == BSA_DTYPE_F32 || d == BSA_DTYPE_F16 || d == BSA_DTYPE_BF16;
}

bsa_status bsa__validate_params(bsa_ctx *ctx, const bsa_attn_params *p, bsa_attn_params *r) {
  if (!p) return FAIL("params is NULL");
  if (p->num_qo_heads < 1) return FAIL("num_qo_heads = %d must be >= 1", p->num_qo_heads);
  if (p->num_kv_heads < 1) return FAIL("num_kv_heads = %d must be >= 1", p->num_kv_heads);
  if (p->num_qo_heads % p->num_kv_heads != 0)
    return FAIL(
        "num_qo_heads = %d is not a multiple of num_kv_heads = %d (GQA groups "
        "must be whole)",
        p->num_qo_heads, p->num_kv_heads);
  if (p->head_dim < 1 || p->head_dim > 1024)
    return FAIL("head_dim = %d is outside [1, 1024]", p->head_dim);
  if (p->qo_len < 1) return FAIL("qo_len = %lld must be >= 1", (long long)p->qo_len);
  if (p->kv_len < 1) return FAIL("kv_len = %lld must be >= 1", (long long)p->kv_len);
  /* Offsets are int64; lengths must keep len * heads * dim well inside. */
  const int64_t max_len = (int64_t)1 << 40;
  if (p->qo_len > max_len || p->kv_len > max_len)
    return FAIL("qo_len = %lld / kv_len = %lld exceed the limit 2^40 tokens", (long long)p->qo_len,
                (long long)p->kv_len);
  if (!valid_dtype(p->q_dtype)) return FAIL("q_dtype = %d is not a bsa_dtype", (int)p->q_dtype);
  if (!valid_dtype(p->kv_dtype)) return FAIL("kv_dtype = %d is not a bsa_dtype", (int)p->kv_dtype);
  if (!valid_dtype(p->o_dtype)) return FAIL("o_dtype = %d is not a bsa_dtype", (int)p->o_dtype);
  if (p->q_dtype != p->kv_dtype)
    return FAIL("kv_dtype = %s does not match q_dtype = %s (q, k and v must share a dtype)",
                bsa_dtype_name(p->kv_dtype), bsa_dtype_name(p->q_dtype));
  if (p->layout != BSA_LAYOUT_NHD && p->layout != BSA_LAYOUT_HND)
    return FAIL("layout = %d is not NHD (0) or HND (1)", (int)p->layout);
  if (!(p->sm_scale >= 0.0f) || !isfinite(p->sm_scale))
    return FAIL("sm_scale = %g must be finite and >= 0 (0 selects 1/sqrt(head_dim))",
                (double)p->sm_scale);
  if (!(p->logits_soft_cap >= 0.0f) || !isfinite(p->logits_soft_cap))
    return FAIL("logits_soft_cap = %g must be finite and >= 0 (0 is off)",
                (double)p->logits_soft_cap);
  if (p->causal != 0 && p->causal != 1) return FAIL("causal = %d must be 0 or 1", p->causal);
  if (p->pos_encoding != BSA_POS_NONE && p->pos_encoding != BSA_POS_ROPE_LLAMA &&
      p->pos_encoding != BSA_POS_ALIBI)
    return FAIL("pos_encoding = %d is not NONE (0), ROPE_LLAMA (1) or ALIBI (2)",
                (int)p->pos_encoding);
  if (p->pos_encoding == BSA_POS_ROPE_LLAMA && p->head_dim % 2)
    return FAIL("head_dim = %d must be even for ROPE_LLAMA", p->head_dim);
  if (!(p->rope_scale >= 0.0f) || !isfinite(p->rope_scale))
    return FAIL("rope_scale = %g must be finite and >= 0 (0 selects 1)", (double)p->rope_scale);
  if (!(p->rope_theta >= 0.0f) || !isfinite(p->rope_theta))
    return FAIL("rope_theta = %g must be finite and >= 0 (0 selects 1e4)", (double)p->rope_theta);

  if (ctx && ctx->device == BSA_DEVICE_CUDA) {
    if (p->head_dim != 64 && p->head_dim != 128 && p->head_dim != 256)
      return bsa__fail(ctx, BSA_ERR_UNSUPPORTED,
                       "head_dim = %d is not supported by the CUDA backend (64, 128, 256)",
                       p->head_dim);
    if (p->q_dtype == BSA_DTYPE_F32)
      return bsa__fail(ctx, BSA_ERR_UNSUPPORTED,
                       "q_dtype = f32 is not supported by the CUDA backend (f16, bf16)");
    if (p->o_dtype == BSA_DTYPE_F32)
      return bsa__fail(ctx, BSA_ERR_UNSUPPORTED,
                       "o_dtype = f32 is not supported by the CUDA backend (f16, bf16)");
  }

  *r = *p;
  if (r->sm_scale == 0.0f) r->sm_scale = 1.0f / sqrtf((float)p->head_dim);
  if (r->rope_scale == 0.0f) r->rope_scale = 1.0f;
  if (r->rope_theta == 0.0f) r->rope_theta = 1e4f;
  return BSA_OK;
}

bsa_status bsa__validate_bsr(bsa_ctx *ctx, const bsa_attn_params *p, const bsa_bsr_desc *b,
                             int64_t *nnz_out) {
  if (!b) return FAIL("bsr is NULL");
  if (b->R < 1) return FAIL("bsr.R = %lld must be >= 1", (long long)b->R);
  if (b->C < 1) return FAIL("bsr.C = %lld must be >= 1", (long long)b->C);
  if (b->per_kv_head != 0 && b->per_kv_head != 1)
    return FAIL("bsr.per_kv_head = %d must be 0 or 1", b->per_kv_head);
  if (!b->indptr) return FAIL("bsr.indptr is NULL");
  const int64_t MB = (p->qo_len + b->R - 1) / b->R;
  const int64_t NB = (p->kv_len + b->C - 1) / b->C;
  const int64_t heads = b->per_kv_head ? p->num_kv_heads : 1;
  if (b->indptr[0] != 0) return FAIL("bsr.indptr[0] = %d must be 0", b->indptr[0]);
  int64_t prev_end = 0;
  for (int64_t h = 0; h < heads; h++) {
    const int32_t *ip = b->indptr + h * (MB + 1);
    if (ip[0] != prev_end)
      return FAIL(
          "bsr.indptr[%lld] (start of kv head %lld) = %d must equal the end of the "
          "previous head, %lld",
          (long long)(h * (MB + 1)), (long long)h, ip[0], (long long)prev_end);
    for (int64_t i = 0; i < MB; i++)
      if (ip[i + 1] < ip[i])
        return FAIL("bsr.indptr is not monotone: indptr[%lld] = %d < indptr[%lld] = %d",
                    (long long)(h * (MB + 1) + i + 1), ip[i + 1], (long long)(h * (MB + 1) + i),
                    ip[i]);
    prev_end = ip[MB];
  }
  const int64_t nnz = prev_end;
  if (nnz > 0 && !b->indices) return FAIL("bsr.indices is NULL but nnz = %lld", (long long)nnz);
  /* Range and duplicates: a stamp per column block remembers the last row
   * that used it. */
  int64_t *stamp = malloc(sizeof(int64_t) * (size_t)(NB > 0 ? NB : 1));
  if (!stamp) return bsa__fail(ctx, BSA_ERR_NOMEM, "bsr validation: out of memory");
  for (int64_t j = 0; j < NB; j++) stamp[j] = -1;
  for (int64_t h = 0; h < heads; h++) {
    const int32_t *ip = b->indptr + h * (MB + 1);
    for (int64_t i = 0; i < MB; i++) {
      const int64_t row_id = h * MB + i;
      for (int64_t e = ip[i]; e < ip[i + 1]; e++) {
        int32_t c = b->indices[e];
        if (c < 0 || c >= NB) {
          free(stamp);
          return FAIL(
              "bsr.indices[%lld] = %d is out of range [0, %lld) (NB = ceil(kv_len / "
              "C))",
              (long long)e, c, (long long)NB);
        }
        if (stamp[c] == row_id) {
          free(stamp);
          return FAIL("bsr.indices[%lld] = %d is duplicated in block row %lld%s", (long long)e, c,
                      (long long)i, b->per_kv_head ? " of its kv head" : "");
        }
        stamp[c] = row_id;
      }
    }
  }
  free(stamp);
  *nnz_out = nnz;
  return BSA_OK;
}

/* Block sizes sz[0..n) of kv head h: none negative, summing to total. */
static bsa_status check_sizes(bsa_ctx *ctx, const char *name, const int32_t *sz, int64_t h,
                              int64_t n, int64_t total, const char *total_name) {
  int64_t sum = 0;
  for (int64_t i = 0; i < n; i++) {
    if (sz[i] < 0)
      return FAIL("var.%s[%lld, %lld] = %d is negative", name, (long long)h, (long long)i, sz[i]);
    sum += sz[i];
  }
  if (sum != total)
    return FAIL("var.%s[%lld, :] sums to %lld but %s = %lld", name, (long long)h, (long long)sum,
                total_name, (long long)total);
  return BSA_OK;
}

bsa_status bsa__validate_var(bsa_ctx *ctx, const bsa_attn_params *p, const bsa_var_desc *v) {
  if (!v) return FAIL("var is NULL");
  if (v->num_block_rows < 1)
    return FAIL("var.num_block_rows = %lld must be >= 1", (long long)v->num_block_rows);
  if (v->num_block_cols < 1)
    return FAIL("var.num_block_cols = %lld must be >= 1", (long long)v->num_block_cols);
  if (!v->block_mask_map) return FAIL("var.block_mask_map is NULL");
  if (!v->block_row_sz) return FAIL("var.block_row_sz is NULL");
  if (!v->block_col_sz) return FAIL("var.block_col_sz is NULL");
  const int64_t MB = v->num_block_rows, NB = v->num_block_cols;
  bsa_status st = BSA_OK;
  for (int64_t h = 0; h < p->num_kv_heads && st == BSA_OK; h++) {
    st = check_sizes(ctx, "block_row_sz", v->block_row_sz + h * MB, h, MB, p->qo_len, "qo_len");
    if (st == BSA_OK)
      st = check_sizes(ctx, "block_col_sz", v->block_col_sz + h * NB, h, NB, p->kv_len, "kv_len");
  }
  return st;
}
