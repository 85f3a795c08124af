/*
 * lib/internal.h - libbsa internals shared by lib/ and kernels/.
 *
 * Symbols here are not API; they use the bsa__ prefix.
 */
#ifndef BSA_INTERNAL_H
#define BSA_INTERNAL_H

#include <stdarg.h>
#include <stdint.h>

#include "bsa/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Errors.  bsa__fail formats a message into the context (and the thread
 * local fallback) and returns the status, so call sites read
 *     return bsa__fail(ctx, BSA_ERR_INVALID_ARG, "qo_len = %lld ...", ...);
 * ---------------------------------------------------------------------- */
#define BSA__MSG_LEN 512
bsa_status bsa__fail(bsa_ctx *ctx, bsa_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void bsa__clear_error(bsa_ctx *ctx);

struct bsa_ctx {
  bsa_device device;
  int cuda_device;
  int num_threads;
  void *cuda_stream;
  char device_name[256];
  char driver[96]; /* CUDA: driver/runtime versions; "" on the CPU */
  char msg[BSA__MSG_LEN];
  int sm_count;     /* CUDA: multiprocessors */
  int64_t l2_bytes; /* CUDA: L2 cache size */
  int cc_major, cc_minor;
};

/* ------------------------------------------------------------------------
 * Work list.
 *
 * The plan compiles a sparsity description into work items.  One item is a
 * (kv head, query row range) whose rows all share one list of KV segments;
 * the query rows of all Hq/Hkv heads of the group are processed together
 * (GQA packing).  A segment is a contiguous key range [kv_begin, kv_end)
 * built by merging adjacent kept blocks; flags say whether elements inside
 * it need masking.  CPU plans order items by kv head, longest first within
 * a head (cost = rows * keys).
 * ---------------------------------------------------------------------- */
enum {
  BSA__SEG_CAUSAL = 1u << 0, /* some (row, key) of it is past the diagonal */
  BSA__SEG_ELEMASK = 1u << 1 /* per-element BSR mask; see mask_offset */
};

typedef struct bsa__segment {
  int64_t kv_begin;
  int64_t kv_end;
  /* BSA__SEG_ELEMASK: offset (in elements) of the [R, C] mask block in the
   * plan's mask array; the segment is exactly one block then and rows of
   * the item start at row (q_begin - block_row_start) of that block. */
  int64_t mask_offset;
  int32_t flags;
  int32_t mask_row0; /* first block row of the item within the mask block */
} bsa__segment;

typedef struct bsa__work_item {
  int32_t kv_head;
  int32_t num_segments;
  int64_t q_begin; /* query rows [q_begin, q_end) (token positions) */
  int64_t q_end;
  int64_t seg_offset; /* index of the first segment in the segment array */
  int64_t cost;       /* rows * keys visited, for ordering */
} bsa__work_item;

struct bsa_plan {
  bsa_ctx *ctx;
  bsa_attn_params p; /* with defaults resolved (sm_scale, rope) */
  int32_t group;     /* Hq / Hkv */

  /* Work list (host). */
  bsa__work_item *items;
  int64_t num_items;
  bsa__segment *segs;
  int64_t num_segs;
  int64_t max_item_rows; /* largest q_end - q_begin */

  /* BSR per-element masks [nnz, R, C], copied (host). */
  uint8_t *mask;
  int64_t mask_bytes;
  int64_t R, C;

  bsa_plan_info info;

  /* Backend state (CUDA: device copies of the work list and masks). */
  void *backend;
  void (*backend_free)(struct bsa_plan *plan);
};

/* Tile height used when compiling work lists: rows per item at most. */
#define BSA__CPU_TILE_Q 128

/* Compiles the work list.  Inputs are validated already.  For a BSR plan
 * bsr is non-NULL, for a variable plan var is non-NULL, for dense both are
 * NULL.  tile_q bounds the rows of an item.  head_order orders the items
 * by kv head and within a head by cost, longest first (the CPU backend's
 * dynamic schedule wants it; the CUDA backend orders items itself), else
 * they stay in the order made (kv head, block row, tile). */
bsa_status bsa__worklist_build(bsa_plan *plan, const bsa_bsr_desc *bsr, const bsa_var_desc *var,
                               int64_t tile_q, int head_order);

/* Threads a plan build may use (the variable-block work list, the CUDA
 * schedule): the context's num_threads, at most BSA__PLAN_MAX_THREADS
 * (include/bsa/core.h documents the limit). */
#define BSA__PLAN_MAX_THREADS 8
static inline int bsa__plan_threads(const bsa_ctx *ctx) {
  const int n = ctx->num_threads;
  return n < 1 ? 1 : n > BSA__PLAN_MAX_THREADS ? BSA__PLAN_MAX_THREADS : n;
}

/* Validation (lib/validate.c).  Each returns BSA_OK or a failure whose
 * message names the argument, the value and the limit.  Resolves defaults
 * into *resolved (sm_scale, rope_scale, rope_theta). */
bsa_status bsa__validate_params(bsa_ctx *ctx, const bsa_attn_params *p, bsa_attn_params *resolved);
bsa_status bsa__validate_bsr(bsa_ctx *ctx, const bsa_attn_params *p, const bsa_bsr_desc *bsr,
                             int64_t *nnz_out);
bsa_status bsa__validate_var(bsa_ctx *ctx, const bsa_attn_params *p, const bsa_var_desc *var);

/* Element strides of a [len, heads, dim] (NHD) or [heads, len, dim] (HND)
 * tensor: between tokens and between heads. */
static inline void bsa__strides(bsa_layout layout, int64_t len, int32_t heads, int32_t dim,
                                int64_t *tok, int64_t *head) {
  *tok = layout == BSA_LAYOUT_NHD ? (int64_t)heads * dim : dim;
  *head = layout == BSA_LAYOUT_NHD ? dim : len * dim;
}

/* Element index helpers: offset of (token t, head h, dim 0). */
static inline int64_t bsa__tok_offset(bsa_layout layout, int64_t len, int32_t heads, int32_t dim,
                                      int64_t t, int32_t h) {
  int64_t ts, hs;
  bsa__strides(layout, len, heads, dim, &ts, &hs);
  return t * ts + (int64_t)h * hs;
}

/* CPU backend. */
bsa_status bsa__cpu_run(bsa_plan *plan, const void *q, const void *k, const void *v, void *o,
                        float *lse);

/* The products of the CPU backend (lib/cpu_gemm.c), row-major.
 * bsa__gemm_arows: C[M, N] = A[M, K] B[K, N] with row i of A at arow[i];
 * M a multiple of 8, N a multiple of 16.  While it reads the A rows of a
 * strip of 8 it brings pfrow[i] (i < npf, another tensor's rows of the same
 * keys: the value rows of the chunk, which the next product reads) into L2;
 * pfrow may be NULL.
 * bsa__gemm_at_brows: C[M, N] (+)= A[M, K] B[K, N] with A transposed
 * (element (i, k) at At[k * ldat + i]) and row k of B at brow[k] (32-column
 * panels read up to N); M a multiple of 8, N a multiple of 32; accumulate = 0
 * overwrites C. */
void bsa__gemm_arows(int64_t M, int64_t N, int64_t K, const float *const *arow, const float *B,
                     int64_t ldb, float *C, int64_t ldc, const float *const *pfrow, int64_t npf);
void bsa__gemm_at_brows(int64_t M, int64_t N, int64_t K, const float *At, int64_t ldat,
                        const float *const *brow, float *C, int64_t ldc, int accumulate);
/* Qt[d * ldt + r] = scale * Q[r * ldq + d] for r < R, d < D, and 0 for
 * R <= r < R rounded up to 16 (ldt >= that). */
void bsa__transpose_scaled(int64_t R, int64_t D, const float *Q, int64_t ldq, float scale,
                           float *Qt, int64_t ldt);

/* Aligned host allocation (64 bytes); free with free(). */
void *bsa__aligned_alloc(size_t bytes);

/* Monotonic clock in milliseconds. */
double bsa__now_ms(void);

#ifdef BSA_HAVE_CUDA
/* CUDA backend (lib/cuda_backend.c + kernels/). */
bsa_status bsa__cuda_ctx_init(bsa_ctx *ctx);
/* Rows per work item the CUDA kernels want for this plan (before the work
 * list is built); bsa__cuda_plan_prepare then uploads the work list. */
int64_t bsa__cuda_tile_q(const bsa_plan *plan);
bsa_status bsa__cuda_plan_prepare(bsa_plan *plan);
bsa_status bsa__cuda_run(bsa_plan *plan, const void *q, const void *k, const void *v, void *o,
                         float *lse);
bsa_status bsa__cuda_alloc(bsa_ctx *ctx, size_t bytes, void **ptr);
void bsa__cuda_free(bsa_ctx *ctx, void *ptr);
bsa_status bsa__cuda_copy(bsa_ctx *ctx, void *dst, const void *src, size_t bytes, int to_device);
bsa_status bsa__cuda_synchronize(bsa_ctx *ctx);
bsa_status bsa__cuda_time(bsa_plan *plan, const void *q, const void *k, const void *v, void *o,
                          float *lse, int warmup, int reps, double *median_ms, double *min_ms);
#endif

#ifdef __cplusplus
}
#endif
#endif /* BSA_INTERNAL_H */
