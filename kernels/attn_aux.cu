/*
 * kernels/attn_aux.cu - launch dispatch by head dim, the split-KV merge and
 * the RoPE prologue.
 *
 * Merge: a split item's pieces each wrote O_p (already divided by its own
 * sum) and lse_p (base 2) per packed row; the result is
 *     O = sum_p w_p O_p / sum_p w_p,  w_p = 2^(lse_p - max lse),
 *     lse = max + log2(sum_p w_p)  (written in natural log),
 * and O = 0, lse = -inf where every piece was empty.
 *
 * RoPE (llama, rotate-half): for i < D/2, with angle = pos / rope_scale *
 * theta^(-2i/D), y[i] = x[i] cos - x[i+D/2] sin and y[i+D/2] = x[i+D/2] cos +
 * x[i] sin, computed in float32 and rounded once to the input dtype.
 */
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

extern "C" int bsa__attn_prepare_d64(int dtype, int hopper, int *smem);
extern "C" int bsa__attn_prepare_d128(int dtype, int hopper, int *smem);
extern "C" int bsa__attn_prepare_d256(int dtype, int hopper, int *smem);
extern "C" int bsa__attn_launch_d64(int dtype, int hopper, const bsa__attn_args *args,
                                    const bsa__tma_maps *maps, void *stream);
extern "C" int bsa__attn_launch_d128(int dtype, int hopper, const bsa__attn_args *args,
                                     const bsa__tma_maps *maps, void *stream);
extern "C" int bsa__attn_launch_d256(int dtype, int hopper, const bsa__attn_args *args,
                                     const bsa__tma_maps *maps, void *stream);
extern "C" int bsa__attn_tma_rows_d64(int hopper);
extern "C" int bsa__attn_tma_rows_d128(int hopper);
extern "C" int bsa__attn_tma_rows_d256(int hopper);

static int prepare_one(int head_dim, int dtype, int hopper, int *smem) {
  switch (head_dim) {
  case 64: return bsa__attn_prepare_d64(dtype, hopper, smem);
  case 128: return bsa__attn_prepare_d128(dtype, hopper, smem);
  case 256: return bsa__attn_prepare_d256(dtype, hopper, smem);
  default: return (int)cudaErrorInvalidValue;
  }
}

extern "C" int bsa__attn_prepare(int head_dim, int dtype, int cc_major, int choice,
                                 bsa__attn_kernel *kernel) {
  if (dtype != 1 && dtype != 2) return (int)cudaErrorInvalidValue;
  kernel->hopper = 0;
  /* Automatic choice: wgmma on cc 9.0 (at head dim 64 the mma.sync kernel
   * was the faster one until the wgmma kernel got its loader warpgroup,
   * docs/kernels.md run 8). */
  const int want = choice == BSA__KERNEL_WGMMA || choice == BSA__KERNEL_AUTO;
  if (cc_major == 9 && want) {
    int smem = 0;
    const int e = prepare_one(head_dim, dtype, 1, &smem);
    if (e == (int)cudaSuccess) {
      kernel->hopper = 1;
      kernel->smem = smem;
      kernel->ctas_per_sm = 1;
      return e;
    }
    /* No sm_90a image in this binary: the mma.sync kernel serves. */
    if (e != (int)cudaErrorNoKernelImageForDevice && e != (int)cudaErrorInvalidDeviceFunction)
      return e;
    (void)cudaGetLastError();
  }
  int smem = 0;
  const int e = prepare_one(head_dim, dtype, 0, &smem);
  kernel->smem = smem;
  kernel->ctas_per_sm = head_dim == 256 ? 1 : 2;
  return e;
}

extern "C" int bsa__attn_launch(int head_dim, int dtype, int hopper, const bsa__attn_args *args,
                                const bsa__tma_maps *maps, void *stream) {
  if (args->num_items <= 0) return 0;
  switch (head_dim) {
  case 64: return bsa__attn_launch_d64(dtype, hopper, args, maps, stream);
  case 128: return bsa__attn_launch_d128(dtype, hopper, args, maps, stream);
  case 256: return bsa__attn_launch_d256(dtype, hopper, args, maps, stream);
  default: return (int)cudaErrorInvalidValue;
  }
}

/* cuTensorMapEncodeTiled from the driver, looked up once (the runtime
 * links no driver symbols); NULL where the driver lacks it. */
typedef CUresult (*encode_tiled_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *,
                                    const cuuint64_t *, const cuuint64_t *, const cuuint32_t *,
                                    const cuuint32_t *, CUtensorMapInterleave, CUtensorMapSwizzle,
                                    CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
static encode_tiled_fn encode_tiled() {
  static const encode_tiled_fn fn = []() -> encode_tiled_fn {
    void *f = nullptr;
    cudaDriverEntryPointQueryResult q;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault,
                                         &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      return nullptr;
    }
    return reinterpret_cast<encode_tiled_fn>(f);
  }();
  return fn;
}

/* The tensor maps' rules: a 16-byte aligned address, strides that are
 * multiples of 16 bytes and under 2^40 bytes, sizes under 2^32. */
static bool map_fits(const void *base, int64_t st, int64_t sh, int64_t len) {
  return !((uintptr_t)base & 15) && (st * 2) % 16 == 0 && (sh * 2) % 16 == 0 &&
         st * 2 < (1ll << 40) && sh * 2 < (1ll << 40) && len > 0 && len < (1ll << 32);
}

/* One 3-D map of 2-byte elements (dtype 1 f16, 2 bf16) over a tensor of
 * len tokens x heads x head_dim with element strides st (token) and sh
 * (head): dimensions (head_dim, then whichever of head and token has the
 * smaller stride, then the other), boxes of 64 head-dim columns (one
 * 128-byte panel row) x box_heads x box_tokens in that order, the 128-byte
 * swizzle of the kernels' panels. */
static bool encode_map(CUtensorMap *m, const void *base, int dtype, int head_dim, int64_t len,
                       int64_t heads, int64_t st, int64_t sh, uint32_t box_heads,
                       uint32_t box_tokens, CUtensorMapL2promotion l2) {
  const bool nhd = sh < st;
  const cuuint64_t dims[3] = {(cuuint64_t)head_dim, (cuuint64_t)(nhd ? heads : len),
                              (cuuint64_t)(nhd ? len : heads)};
  const cuuint64_t strides[2] = {(cuuint64_t)(nhd ? sh : st) * 2, (cuuint64_t)(nhd ? st : sh) * 2};
  const cuuint32_t box[3] = {64, nhd ? box_heads : box_tokens, nhd ? box_tokens : box_heads};
  const cuuint32_t estr[3] = {1, 1, 1};
  return encode_tiled()(m,
                        dtype == 2 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                   : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
                        3, const_cast<void *>(base), dims, strides, box, estr,
                        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, l2,
                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

/* Keys per tile the chosen kernel loads by TMA, 0: none. */
static int tma_rows(int head_dim, int hopper) {
  switch (head_dim) {
  case 64: return bsa__attn_tma_rows_d64(hopper);
  case 128: return bsa__attn_tma_rows_d128(hopper);
  case 256: return bsa__attn_tma_rows_d256(hopper);
  default: return 0;
  }
}

extern "C" int bsa__kv_maps_encode(int head_dim, int dtype, int hopper, const bsa__attn_args *args,
                                   int64_t kv_len, int32_t num_kv_heads, bsa__tma_maps *maps) {
  static_assert(sizeof(bsa__tma_maps) == 3 * sizeof(CUtensorMap), "three maps");
  const int rows = tma_rows(head_dim, hopper);
  const int64_t st = args->k_st, sh = args->k_sh;
  if (rows == 0 || (dtype != 1 && dtype != 2) || !encode_tiled() || num_kv_heads <= 0 ||
      !map_fits(args->k, st, sh, kv_len) || !map_fits(args->v, st, sh, kv_len))
    return 0;
  alignas(128) CUtensorMap mk, mv;
  if (!encode_map(&mk, args->k, dtype, head_dim, kv_len, num_kv_heads, st, sh, 1, (uint32_t)rows,
                  CU_TENSOR_MAP_L2_PROMOTION_L2_256B) ||
      !encode_map(&mv, args->v, dtype, head_dim, kv_len, num_kv_heads, st, sh, 1, (uint32_t)rows,
                  CU_TENSOR_MAP_L2_PROMOTION_L2_256B))
    return 0;
  memcpy(maps->words, &mk, sizeof mk);
  memcpy(maps->words + 16, &mv, sizeof mv);
  return sh < st ? BSA__TMA_NHD : BSA__TMA_HND;
}

extern "C" int bsa__o_map_encode(int head_dim, int o_dtype, int hopper, const bsa__attn_args *args,
                                 int64_t qo_len, bsa__tma_maps *maps) {
  const int64_t st = args->o_st, sh = args->o_sh, g = args->group;
  if (tma_rows(head_dim, hopper) == 0 || (o_dtype != 1 && o_dtype != 2) || !encode_tiled() ||
      !map_fits(args->o, st, sh, qo_len))
    return 0;
  /* A math warpgroup's slice is 64 packed rows: 64 / g tokens x the g
   * heads of its group.  NHD holds them as one box (D, g heads, 64 / g
   * tokens); HND only when g is 1 (its boxes run over tokens first). */
  const bool nhd = sh < st;
  if (g <= 0 || 64 % g || (!nhd && g != 1)) return 0;
  alignas(128) CUtensorMap mo;
  if (!encode_map(&mo, args->o, o_dtype, head_dim, qo_len, args->num_qo_heads, st, sh,
                  (uint32_t)g, (uint32_t)(64 / g), CU_TENSOR_MAP_L2_PROMOTION_NONE))
    return 0;
  memcpy(maps->words + 32, &mo, sizeof mo);
  return 1;
}

namespace {

__device__ __forceinline__ void store_one(void *o, int dtype, int64_t off, float a) {
  if (dtype == 0)
    static_cast<float *>(o)[off] = a;
  else if (dtype == 1)
    static_cast<__half *>(o)[off] = __float2half_rn(a);
  else
    static_cast<__nv_bfloat16 *>(o)[off] = __float2bfloat16_rn(a);
}

/* grid (num_merge, grid_y), 128 threads; one thread per (row, dim) step. */
__global__ void attn_merge(const bsa__attn_args a, const bsa__gpu_merge *__restrict__ merges,
                           int head_dim) {
  const bsa__gpu_merge mg = merges[blockIdx.x];
  const int group = a.group;
  const int prow0 = blockIdx.y * BSA__GPU_BM;
  const int nprows = min(mg.rows * group - prow0, BSA__GPU_BM);
  if (nprows <= 0) return;
  const int D = head_dim;
  for (int idx = threadIdx.x; idx < nprows * D; idx += blockDim.x) {
    const int r = idx / D, d = idx % D;
    float mx = -INFINITY;
    for (int p = 0; p < mg.nparts; ++p) {
      const int64_t slot = (int64_t)(mg.part0 + p) * a.grid_y + blockIdx.y;
      mx = fmaxf(mx, a.part_lse[slot * BSA__GPU_BM + r]);
    }
    float acc = 0.f, wsum = 0.f;
    if (mx != -INFINITY) {
      for (int p = 0; p < mg.nparts; ++p) {
        const int64_t slot = (int64_t)(mg.part0 + p) * a.grid_y + blockIdx.y;
        const float w = exp2f(a.part_lse[slot * BSA__GPU_BM + r] - mx);
        wsum += w;
        acc += w * a.part_o[(slot * BSA__GPU_BM + r) * D + d];
      }
    }
    const int pr = prow0 + r;
    const int64_t tok = mg.q_begin + pr / group;
    const int64_t head = (int64_t)mg.kv_head * group + pr % group;
    store_one(a.o, a.o_dtype, tok * a.o_st + head * a.o_sh + d, wsum > 0.f ? acc / wsum : 0.f);
    if (a.lse && d == 0)
      a.lse[tok * a.num_qo_heads + head] =
          wsum > 0.f ? (mx + log2f(wsum)) * 0.6931471805599453f : -INFINITY;
  }
}

template <typename T> __device__ __forceinline__ float to_f(T x);
template <> __device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
template <> __device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ __half from_f(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f(float x) {
  return __float2bfloat16_rn(x);
}

template <typename T>
__global__ void rope_kernel(const T *__restrict__ x, T *__restrict__ y, int64_t len, int heads,
                            int D, int64_t st, int64_t sh, int64_t pos_offset, float rcp_scale,
                            float log2_theta) {
  const int half = D / 2;
  const int64_t total = len * heads * half;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int i = (int)(idx % half);
    const int64_t th = idx / half;
    const int h = (int)(th % heads);
    const int64_t t = th / heads;
    const float inv_freq = exp2f(-(2.f * i / D) * log2_theta);
    const float ang = (float)(t + pos_offset) * rcp_scale * inv_freq;
    float sn, cs;
    sincosf(ang, &sn, &cs);
    const int64_t base = t * st + h * sh;
    const float x1 = to_f(x[base + i]), x2 = to_f(x[base + i + half]);
    y[base + i] = from_f<T>(x1 * cs - x2 * sn);
    y[base + i + half] = from_f<T>(x2 * cs + x1 * sn);
  }
}

} /* namespace */

extern "C" int bsa__attn_merge_launch(int head_dim, const bsa__attn_args *args,
                                      const bsa__gpu_merge *merges, int32_t num_merge,
                                      void *stream) {
  if (num_merge <= 0) return 0;
  dim3 grid((unsigned)num_merge, (unsigned)args->grid_y);
  attn_merge<<<grid, 128, 0, static_cast<cudaStream_t>(stream)>>>(*args, merges, head_dim);
  return (int)cudaGetLastError();
}

extern "C" int bsa__rope_launch(int dtype, const void *x, void *y, int64_t len, int32_t heads,
                                int32_t head_dim, int64_t st, int64_t sh, int64_t pos_offset,
                                float rope_scale, float rope_theta, void *stream) {
  const int64_t total = len * heads * (head_dim / 2);
  if (total <= 0) return 0;
  const int threads = 256;
  int64_t blocks = (total + threads - 1) / threads;
  if (blocks > 65535 * 16) blocks = 65535 * 16;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const float rcp = 1.f / rope_scale, lt = log2f(rope_theta);
  if (dtype == 2)
    rope_kernel<__nv_bfloat16><<<(unsigned)blocks, threads, 0, s>>>(
        static_cast<const __nv_bfloat16 *>(x), static_cast<__nv_bfloat16 *>(y), len, heads,
        head_dim, st, sh, pos_offset, rcp, lt);
  else if (dtype == 1)
    rope_kernel<__half><<<(unsigned)blocks, threads, 0, s>>>(
        static_cast<const __half *>(x), static_cast<__half *>(y), len, heads, head_dim, st, sh,
        pos_offset, rcp, lt);
  else
    return (int)cudaErrorInvalidValue;
  return (int)cudaGetLastError();
}
