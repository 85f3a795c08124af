/*
 * kernels/kernels.h - the C interface between lib/cuda_backend.c (host logic,
 * C11) and the CUDA kernels in kernels/ (kernels and thin launchers).
 *
 * The host side compiles a plan's work list into the flat device arrays
 * below (bsa__gpu_item, bsa__gpu_seg), fills one bsa__attn_args and calls a
 * launcher.  Launchers only enqueue work on the given stream and return the
 * CUDA error code of the launch (0 = cudaSuccess); they never synchronise.
 */
#ifndef BSA_KERNELS_H
#define BSA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Query rows of one CTA of the attention kernel (packed over the GQA group:
 * a CTA holds BSA__GPU_BM (query token, head-of-group) pairs).  The plan's
 * tile_q is BSA__GPU_BM / group so that one work item fits one CTA. */
#define BSA__GPU_BM 128

/* One CTA's work: query rows [q_begin, q_begin + rows) of the heads of group
 * kv_head, against the virtual key sequence made by concatenating nseg
 * segments starting at segs[seg_begin] (the first one shortened by skip
 * keys), nkeys keys in all.  part >= 0 marks one piece of a split item: the
 * kernel then writes partial results (normalised O and base-2 LSE) to the
 * plan's split workspace (slot part) and the merge kernel combines them.
 * 32 bytes. */
typedef struct bsa__gpu_item {
  int32_t kv_head;
  int32_t rows;
  int32_t q_begin;
  int32_t nkeys;
  int32_t seg_begin;
  int32_t nseg;
  int32_t skip;
  int32_t part;
} bsa__gpu_item;

/* A contiguous key range [kv_begin, kv_begin + len) with the work list's
 * BSA__SEG_* flags (1 causal, 2 element mask).  For an element mask the
 * byte of (item row i, key j) is mask[mask_base + i * C + j] (the host keeps
 * masks under 2^31 bytes).  16 bytes, loaded as one int4. */
typedef struct bsa__gpu_seg {
  int32_t kv_begin;
  int32_t len;
  int32_t flags;
  int32_t mask_base;
} bsa__gpu_seg;

/* A split item to merge: the original item's rows and its nparts partial
 * slots starting at part0. */
typedef struct bsa__gpu_merge {
  int32_t kv_head;
  int32_t rows;
  int32_t q_begin;
  int32_t part0;
  int32_t nparts;
  int32_t pad_;
} bsa__gpu_merge;

/* Element dtypes as in bsa/core.h (BSA_DTYPE_F32 = 0, F16 = 1, BF16 = 2). */
typedef struct bsa__attn_args {
  const void *q, *k, *v; /* q/k/v in dtype; k and v share strides */
  void *o;               /* output in o_dtype */
  float *lse;            /* [qo_len, Hq] or NULL */
  int64_t q_st, q_sh;    /* element strides of q: token, head */
  int64_t k_st, k_sh;    /* of k and v */
  int64_t o_st, o_sh;    /* of o */
  const bsa__gpu_item *items;
  const bsa__gpu_seg *segs;
  const uint8_t *mask; /* BSR per-element masks or NULL */
  int64_t mask_C;      /* columns of a mask block */
  const float *slopes; /* ALiBi slopes * log2(e) per query head, or NULL */
  float *part_o;       /* split workspace: [slots, BM, D] float32 */
  float *part_lse;     /* [slots, BM] float32, log2 units */
  int32_t num_items;
  int32_t grid_y; /* CTAs per item along packed rows */
  int32_t group;  /* Hq / Hkv */
  int32_t num_qo_heads;
  int32_t causal_off; /* kv_len - qo_len */
  int32_t causal;
  float scale_log2; /* sm_scale * log2(e) */
  float cap;        /* soft cap (0 = off) */
  float cap_in;     /* sm_scale / cap */
  int32_t o_dtype;
  int32_t ctas;    /* persistent kernels: CTAs to launch (SMs x CTAs per SM) */
  int32_t persist; /* run persistent CTAs where the kernel has them */
  /* Persistent CTA b runs works work_list[cta_off[b] .. cta_off[b + 1]) in
   * that order (a work w is row slice w % grid_y of item w / grid_y); the
   * host balances the lists. */
  const int32_t *work_list;
  const int32_t *cta_off; /* [ctas + 1] */
  /* Whole tiles of K and V by the tensor-memory accelerator (the
   * warp-specialised wgmma kernel, bsa__tma_maps): 0 off, else the order of
   * the maps' dimensions, BSA__TMA_HND or BSA__TMA_NHD. */
  int32_t tma;
  /* Whole 64-row slices of O stored by TMA from shared memory (the third
   * map of bsa__tma_maps): 0 off, 1 on. */
  int32_t tma_o;
#ifdef BSA_PROFILE
  /* Profiling builds only (-DBSA_PROFILE): per-phase clock stamps of the
   * persistent wgmma kernel, or NULL (layout in attn_fwd_sm90.cuh). */
  unsigned long long *prof;
#endif
} bsa__attn_args;

#define BSA__TMA_HND 1 /* dimensions (D, key, kv head) */
#define BSA__TMA_NHD 2 /* dimensions (D, kv head, key) */
#define BSA__TMA_O 4   /* bsa__cuda_plan_tma: O stored by TMA too */

/* The TMA tensor maps (CUtensorMap, 128 bytes each: K, V, then O) that
 * the warp-specialised wgmma kernel loads whole tiles and stores whole
 * slices of O with; opaque to C.  Encoded on the host from args' k, v, o
 * and strides, passed to the kernel by value at each launch. */
typedef struct bsa__tma_maps {
  uint64_t words[48];
} bsa__tma_maps;

/* Encodes the K and V maps for the kernel bsa__attn_prepare chose (hopper)
 * for args' k and v (dtype; kv_len keys, num_kv_heads heads).  Returns
 * BSA__TMA_HND or BSA__TMA_NHD (the value for args->tma), or 0 when that
 * kernel loads no tile by TMA or these tensors do not allow it (addresses
 * or strides not multiples of 16 bytes, sizes past the maps' limits, a
 * driver without the entry point): the kernel then copies every tile with
 * cp.async. */
int bsa__kv_maps_encode(int head_dim, int dtype, int hopper, const bsa__attn_args *args,
                        int64_t kv_len, int32_t num_kv_heads, bsa__tma_maps *maps);

/* Encodes the O map (args' o, strides o_st/o_sh, qo_len tokens,
 * args->num_qo_heads heads, group args->group).  Returns 1 (the value for
 * args->tma_o) when the kernel can store whole slices of 64 packed rows
 * with it: NHD with a group dividing 64, HND with a group of 1 (a slice
 * must be one box), an encodable map; else 0 (the math warps store every
 * row). */
int bsa__o_map_encode(int head_dim, int o_dtype, int hopper, const bsa__attn_args *args,
                      int64_t qo_len, bsa__tma_maps *maps);

/* The attention kernel chosen for a plan. */
typedef struct bsa__attn_kernel {
  int32_t hopper;      /* 1: wgmma kernel (sm_90a), 0: mma.sync kernel */
  int32_t smem;        /* dynamic shared memory per CTA, bytes */
  int32_t ctas_per_sm; /* resident CTAs per SM the configuration is made for */
} bsa__attn_kernel;

/* Kernel choice (BSA_CUDA_KERNEL=auto|mma|wgmma in the environment). */
#define BSA__KERNEL_AUTO 0  /* wgmma on cc 9.0 */
#define BSA__KERNEL_MMA 1   /* mma.sync everywhere */
#define BSA__KERNEL_WGMMA 2 /* wgmma wherever the device and binary have it */

/* Chooses the attention kernel for (head_dim, dtype) on a device of compute
 * capability cc_major: the wgmma kernel when cc_major is 9, the choice asks
 * for it and the binary holds its sm_90a image, else the mma.sync kernel.
 * Grows the kernels' dynamic shared memory limits (not capturable work).
 * Returns a cudaError_t value; 1 (cudaErrorInvalidValue) for an unsupported
 * combination. */
int bsa__attn_prepare(int head_dim, int dtype, int cc_major, int choice,
                      bsa__attn_kernel *kernel);

/* Enqueues the attention kernel chosen by bsa__attn_prepare: grid
 * (num_items, grid_y).  maps: as encoded for args (read when args->tma). */
int bsa__attn_launch(int head_dim, int dtype, int hopper, const bsa__attn_args *args,
                     const bsa__tma_maps *maps, void *stream);

/* Enqueues the split-KV merge: for each of num_merge merges, combines the
 * partials into o (and lse). */
int bsa__attn_merge_launch(int head_dim, const bsa__attn_args *args, const bsa__gpu_merge *merges,
                           int32_t num_merge, void *stream);

/* Enqueues RoPE (llama, rotate-half) of x [len, heads, D] (strides st, sh)
 * into y with the same strides: position of token t is t + pos_offset,
 * angle = pos / rope_scale * theta^(-2i/D). */
int bsa__rope_launch(int dtype, const void *x, void *y, int64_t len, int32_t heads,
                     int32_t head_dim, int64_t st, int64_t sh, int64_t pos_offset, float rope_scale,
                     float rope_theta, void *stream);

/* For tests (lib/cuda_backend.c, host side): the bytes a CUDA plan
 * uploaded at plan time (items, segments, merges, slopes, masks and, when
 * the plan runs persistent, the work lists), copied from the device.
 * *bytes always receives their count; the copy into dst happens only when
 * cap holds them all.  Synchronises the plan's stream.  Returns a
 * cudaError_t value (cudaErrorInvalidValue for a plan without CUDA state). */
struct bsa_plan;
int bsa__cuda_plan_schedule(const struct bsa_plan *plan, void *dst, size_t cap, size_t *bytes);

/* For tests: how the last run of a CUDA plan used TMA: its args.tma (0:
 * every K/V tile by cp.async; BSA__TMA_HND / BSA__TMA_NHD: whole tiles by
 * the maps), plus BSA__TMA_O when whole slices of O were stored by TMA; -1
 * for a plan without CUDA state. */
int bsa__cuda_plan_tma(const struct bsa_plan *plan);

#ifdef BSA_PROFILE
/* Profiling builds: device buffer of BSA__PROF_STREAMS streams of
 * BSA__PROF_WORDS 64-bit words that runs stamp into (NULL: none). */
#define BSA__PROF_CAP 2048 /* records per stream */
#define BSA__PROF_STREAMS 264
#define BSA__PROF_WORDS (8 + 2 * BSA__PROF_CAP)
extern void *bsa__cuda_prof;
#endif

#ifdef __cplusplus
}
#endif
#endif /* BSA_KERNELS_H */
