/*
 * bsa/core.h - libbsa: block-sparse attention on the CPU and on NVIDIA GPUs.
 *
 * The library computes, for every query head h and query token i,
 *
 *     s_ij = sm_scale * <q_i, k_j>               (after RoPE, when enabled)
 *     s_ij = cap * tanh(s_ij / cap)              (when logits_soft_cap > 0)
 *     s_ij = s_ij + slope_h * (j - (i + kv_len - qo_len))   (ALiBi)
 *     o_i  = sum_j softmax_j(s_ij) v_j           over the visible keys j
 *     lse_i = log(sum_j exp(s_ij))               natural log
 *
 * where key j is visible to query i when the sparsity description keeps the
 * block (or element) and, if causal, j <= i + (kv_len - qo_len).  A query
 * with no visible key gets o_i = 0 and lse_i = -inf.
 *
 * Usage: create a context, build a plan from parameters and a sparsity
 * description (dense, BSR or variable blocks), run the plan on q/k/v as many
 * times as needed, destroy the plan.  The API follows FlashInfer's
 * BlockSparseAttentionWrapper and VariableBlockSparseAttentionWrapper.
 *
 * Thread safety: a context and its plans may be used from one thread at a
 * time.  Different contexts are independent.  The CPU backend runs its own
 * worker threads (bsa_ctx_options.num_threads) for the duration of a run;
 * bsa_plan_create_var builds large variable-block plans, and a CUDA context
 * prepares the device schedule of large plans, on up to 8 of them for the
 * duration of the plan call.
 */
#ifndef BSA_CORE_H
#define BSA_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Status codes.  Every fallible call returns one; BSA_OK is zero.
 * ---------------------------------------------------------------------- */
typedef enum bsa_status {
  BSA_OK = 0,
  BSA_ERR_INVALID_ARG = 1, /* a null pointer, value out of range, bad layout */
  BSA_ERR_UNSUPPORTED = 2, /* valid request the chosen backend cannot do */
  BSA_ERR_NOMEM = 3,       /* host or device allocation failed */
  BSA_ERR_NO_DEVICE = 4,   /* CUDA requested but no usable device/build */
  BSA_ERR_CUDA = 5,        /* a CUDA runtime call failed (message has it) */
  BSA_ERR_IO = 6,          /* file or library I/O failed (used by modules) */
  BSA_ERR_FORMAT = 7,      /* a file has the wrong structure (modules) */
  BSA_ERR_INTERNAL = 8
} bsa_status;

/* Static text for a status code; never NULL. */
const char *bsa_status_string(bsa_status status);

/* The detailed message of the last failure in this thread (for calls that
 * have no context, and as a fallback).  Valid until the next failing call in
 * this thread.  Never NULL ("" when none). */
const char *bsa_last_error(void);

/* Library version string, e.g. "0.1.0". */
const char *bsa_version(void);

/* Build description: compiler, CUDA targets (e.g. "cuda:80,90a" or "cpu"). */
const char *bsa_build_info(void);

/* ------------------------------------------------------------------------
 * Enumerations.  Zero is the default of each.
 * ---------------------------------------------------------------------- */
typedef enum bsa_dtype { BSA_DTYPE_F32 = 0, BSA_DTYPE_F16 = 1, BSA_DTYPE_BF16 = 2 } bsa_dtype;

/* NHD: [len, heads, head_dim] row-major.  HND: [heads, len, head_dim]. */
typedef enum bsa_layout { BSA_LAYOUT_NHD = 0, BSA_LAYOUT_HND = 1 } bsa_layout;

typedef enum bsa_pos_encoding {
  BSA_POS_NONE = 0,
  BSA_POS_ROPE_LLAMA = 1, /* rotate-half RoPE on q and k, applied on the fly */
  BSA_POS_ALIBI = 2       /* standard ALiBi slopes per query head */
} bsa_pos_encoding;

typedef enum bsa_device { BSA_DEVICE_CPU = 0, BSA_DEVICE_CUDA = 1 } bsa_device;

/* Size in bytes of one element of dtype (4 or 2). */
size_t bsa_dtype_size(bsa_dtype dtype);
/* "f32", "f16", "bf16". */
const char *bsa_dtype_name(bsa_dtype dtype);
/* Parses "f32"/"f16"/"bf16"; returns BSA_ERR_INVALID_ARG otherwise. */
bsa_status bsa_dtype_parse(const char *name, bsa_dtype *out);

/* ------------------------------------------------------------------------
 * Context: device, CPU threads, CUDA stream, workspace.
 * ---------------------------------------------------------------------- */
typedef struct bsa_ctx bsa_ctx;

typedef struct bsa_ctx_options {
  bsa_device device; /* default CPU */
  int cuda_device;   /* CUDA device ordinal (default 0) */
  int num_threads;   /* CPU worker threads (runs, plan building); 0 = online CPUs */
  void *cuda_stream; /* cudaStream_t to launch on; NULL = default stream */
} bsa_ctx_options;

/* Creates a context.  opts may be NULL (CPU, all cores).  On failure *out is
 * set to NULL and the message is in bsa_last_error().  BSA_ERR_NO_DEVICE when
 * CUDA is asked for and the library was built without it or no device is
 * present. */
bsa_status bsa_ctx_create(const bsa_ctx_options *opts, bsa_ctx **out);

/* Destroys a context; accepts NULL.  Plans made from it must be destroyed
 * first. */
void bsa_ctx_destroy(bsa_ctx *ctx);

/* The detailed message of the last failure on this context ("" if none). */
const char *bsa_ctx_last_error(const bsa_ctx *ctx);

bsa_device bsa_ctx_device(const bsa_ctx *ctx);
int bsa_ctx_num_threads(const bsa_ctx *ctx);

/* Name of the device: "cpu (N threads)" or the CUDA device name. */
const char *bsa_ctx_device_name(const bsa_ctx *ctx);

/* CUDA: "CUDA driver X.Y, runtime X.Y, sm_XY"; "" for a CPU context. */
const char *bsa_ctx_device_driver(const bsa_ctx *ctx);

/* ------------------------------------------------------------------------
 * Attention parameters.  A zero-initialised struct plus the shape fields is
 * valid: f32 NHD, sm_scale = 1/sqrt(head_dim), no cap, not causal, no
 * positional encoding, no LSE.
 * ---------------------------------------------------------------------- */
typedef struct bsa_attn_params {
  int32_t num_qo_heads; /* Hq, a multiple of num_kv_heads (GQA) */
  int32_t num_kv_heads; /* Hkv */
  int32_t head_dim;     /* D: CPU any 1..1024; CUDA 64, 128, 256 */
  int64_t qo_len;       /* M query tokens */
  int64_t kv_len;       /* N key/value tokens */
  bsa_dtype q_dtype;
  bsa_dtype kv_dtype;
  bsa_dtype o_dtype;
  bsa_layout layout;     /* applies to q, k, v and o */
  float sm_scale;        /* 0: 1/sqrt(head_dim) */
  float logits_soft_cap; /* 0: off, else cap * tanh(s / cap) */
  int32_t causal;        /* global causal, see the top of this file */
  bsa_pos_encoding pos_encoding;
  float rope_scale; /* ROPE_LLAMA: positions divided by this; 0 = 1 */
  float rope_theta; /* ROPE_LLAMA: base; 0 = 1e4 */
} bsa_attn_params;

/* ------------------------------------------------------------------------
 * Sparsity descriptions.  All arrays are host memory, borrowed for the
 * duration of the plan call only (the plan keeps what it needs).
 * ---------------------------------------------------------------------- */

/* Fixed blocks, BSR (FlashInfer BlockSparseAttentionWrapper).  The qo_len x
 * kv_len matrix is cut into blocks of R x C (the last block row/column may be
 * partial); MB = ceil(qo_len / R), NB = ceil(kv_len / C).
 *
 * Shared pattern (per_kv_head = 0): indptr [MB+1], indices [nnz] (column
 * block ids, unique per row), optional mask [nnz, R, C] uint8 (nonzero keeps
 * the element).
 *
 * Per-kv-head pattern (per_kv_head = 1): indptr [Hkv, MB+1] into one indices
 * array (head h, row block i covers indices[indptr[h*(MB+1)+i] ..
 * indptr[h*(MB+1)+i+1]) ), mask likewise [nnz, R, C]. */
typedef struct bsa_bsr_desc {
  int64_t R;
  int64_t C;
  const int32_t *indptr;
  const int32_t *indices;
  const uint8_t *mask; /* optional, NULL = whole blocks */
  int32_t per_kv_head;
} bsa_bsr_desc;

/* Variable blocks (FlashInfer VariableBlockSparseAttentionWrapper).  For each
 * kv head h: block_row_sz[h, :MB] sums to qo_len, block_col_sz[h, :NB] sums
 * to kv_len (sizes may be 0), block_mask_map[h, i, j] nonzero keeps the block
 * of rows of row block i and columns of column block j. */
typedef struct bsa_var_desc {
  int64_t num_block_rows;        /* MB */
  int64_t num_block_cols;        /* NB */
  const uint8_t *block_mask_map; /* [Hkv, MB, NB] */
  const int32_t *block_row_sz;   /* [Hkv, MB] */
  const int32_t *block_col_sz;   /* [Hkv, NB] */
} bsa_var_desc;

/* ------------------------------------------------------------------------
 * Plans.
 * ---------------------------------------------------------------------- */
typedef struct bsa_plan bsa_plan;

/* Dense attention (with causal/ALiBi/... as in params). */
bsa_status bsa_plan_create_dense(bsa_ctx *ctx, const bsa_attn_params *params, bsa_plan **out);
/* Fixed-block sparse attention. */
bsa_status bsa_plan_create_bsr(bsa_ctx *ctx, const bsa_attn_params *params, const bsa_bsr_desc *bsr,
                               bsa_plan **out);
/* Variable-block sparse attention. */
bsa_status bsa_plan_create_var(bsa_ctx *ctx, const bsa_attn_params *params, const bsa_var_desc *var,
                               bsa_plan **out);

/* All three validate everything once (messages name the argument, the value
 * and the limit) and compile the description into a work list.  On failure
 * *out is NULL and nothing the caller owns is modified. */

/* Destroys a plan; accepts NULL. */
void bsa_plan_destroy(bsa_plan *plan);

/* Runs the plan.  q [qo_len, Hq, D] (NHD) or [Hq, qo_len, D] (HND) in
 * q_dtype; k, v likewise with Hkv and kv_len in kv_dtype; o like q in
 * o_dtype.  lse: optional float32 [qo_len, Hq] (FlashInfer's layout), NULL
 * for none.  All pointers are in the plan's device memory (host for CPU,
 * device for CUDA).  On CUDA the call only enqueues work on the context's
 * stream (no host work, no synchronisation), so it can be captured in a
 * CUDA graph.  The plan can be run any number of times. */
bsa_status bsa_plan_run(bsa_plan *plan, const void *q, const void *k, const void *v, void *o,
                        float *lse);

/* Facts about a plan, for FLOP counts and reports. */
typedef struct bsa_plan_info {
  int64_t visible_pairs;   /* (query, key) pairs computed, summed over Hq */
  int64_t total_pairs;     /* Hq * qo_len * kv_len (or the causal count) */
  double density;          /* visible_pairs / total_pairs */
  int64_t num_work_items;  /* entries of the compiled work list */
  int64_t num_segments;    /* KV segments over all work items */
  int64_t masked_segments; /* segments that need element masking */
} bsa_plan_info;

bsa_status bsa_plan_get_info(const bsa_plan *plan, bsa_plan_info *info);

/* FLOPs of a plan's run: 4 * head_dim * visible_pairs. */
double bsa_plan_flops(const bsa_plan *plan);

/* ALiBi slope of query head h of num_heads (FlashInfer's/standard formula). */
float bsa_alibi_slope(int32_t h, int32_t num_heads);

/* ------------------------------------------------------------------------
 * Memory on the context's device, and timing.  For a CPU context these are
 * 64-byte aligned host allocations and memcpy; blocks of 2 MiB or more are
 * 2 MiB aligned and asked for transparent huge pages (madvise), which the
 * CPU backend's scattered row reads profit from.
 * ---------------------------------------------------------------------- */

/* Allocates bytes on the context's device; *ptr is NULL on failure. */
bsa_status bsa_ctx_alloc(bsa_ctx *ctx, size_t bytes, void **ptr);
/* Frees memory from bsa_ctx_alloc; accepts NULL. */
void bsa_ctx_free(bsa_ctx *ctx, void *ptr);
/* Copies host -> context device, and context device -> host (synchronous). */
bsa_status bsa_ctx_copy_to_device(bsa_ctx *ctx, void *dst, const void *src, size_t bytes);
bsa_status bsa_ctx_copy_to_host(bsa_ctx *ctx, void *dst, const void *src, size_t bytes);
/* Waits for all work enqueued on the context's stream. */
bsa_status bsa_ctx_synchronize(bsa_ctx *ctx);

/* Times bsa_plan_run; *median_ms is the median of the timed runs and
 * *min_ms (may be NULL) the minimum.  CPU context: warmup runs, then reps
 * runs timed with a monotonic clock.  CUDA context: the method of
 * triton.testing.do_bench (which the peers' timings use): an estimate
 * from five runs, then at least warmup runs and 50 ms of warm-up, then at
 * least reps runs and 200 ms of timed runs (CUDA events around each run),
 * each timed run behind a write of max(256 MiB, 2 x L2) that leaves L2
 * cold; the buffer is allocated and freed on the context's stream. */
bsa_status bsa_plan_time(bsa_plan *plan, const void *q, const void *k, const void *v, void *o,
                         float *lse, int warmup, int reps, double *median_ms, double *min_ms);

/* ------------------------------------------------------------------------
 * Half-precision helpers (host).
 * ---------------------------------------------------------------------- */
uint16_t bsa_f32_to_f16(float x);
float bsa_f16_to_f32(uint16_t h);
uint16_t bsa_f32_to_bf16(float x); /* round to nearest even */
float bsa_bf16_to_f32(uint16_t h);

/* Converts n values from src (dtype src_t) to dst (dtype dst_t), host. */
void bsa_convert(void *dst, bsa_dtype dst_t, const void *src, bsa_dtype src_t, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* BSA_CORE_H */
