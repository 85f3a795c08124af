/*
 * kernels/attn_common.cuh - pieces shared by the attention kernels: copies
 * and math intrinsics, the key cursor over a work item's segments, the score
 * transform (soft cap, ALiBi, masks), the online softmax and the epilogue.
 *
 * Score tiles are held in the accumulator layout shared by mma.sync
 * m16n8k16 and wgmma m64nNk16: per warp 16*WM rows, s[mt][j][e] is row
 * wrow0 + 16 mt + lane/4 + 8 (e>>1), column 8 j + 2 (lane%4) + (e&1).
 */
#ifndef BSA_ATTN_COMMON_CUH
#define BSA_ATTN_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "kernels/kernels.h"

namespace bsak {

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
  return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16-byte asynchronous copy; with valid == false the destination is zero
 * filled and nothing is read. */
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid) {
  int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(n)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float tanh_fast(float x) {
  float y;
  asm("tanh.approx.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t *>(&h);
}
template <> __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t *>(&h);
}

__device__ __forceinline__ void store_pair(void *o, int dtype, int64_t off, float a,
                                           float b) {
  if (dtype == 0) {
    *reinterpret_cast<float2 *>(static_cast<float *>(o) + off) = make_float2(a, b);
  } else if (dtype == 1) {
    *reinterpret_cast<__half2 *>(static_cast<__half *>(o) + off) = __floats2half2_rn(a, b);
  } else {
    *reinterpret_cast<__nv_bfloat162 *>(static_cast<__nv_bfloat16 *>(o) + off) =
        __floats2bfloat162_rn(a, b);
  }
}

/* Forward-only walk over an item's segments.  A loader thread's rows grow
 * monotonically over the whole item, so it maps virtual key v to token
 * v + kd with a compare per row; the next segment record is loaded one step
 * ahead so that crossing a segment edge does not wait on memory. */
struct SegCursor {
  const int4 *segs;
  int cs, nseg, vend, kd, flags, mb;
  int4 nx;
  __device__ __forceinline__ void init(const bsa__attn_args &a, const bsa__gpu_item &it) {
    segs = reinterpret_cast<const int4 *>(a.segs) + it.seg_begin;
    nseg = it.nseg;
    cs = 0;
    vend = kd = flags = mb = 0;
    nx = make_int4(0, 0, 0, 0);
    if (nseg > 0) {
      const int4 s0 = segs[0];
      vend = s0.y - it.skip;
      kd = s0.x + it.skip;
      flags = s0.z;
      mb = s0.w;
      if (nseg > 1) nx = segs[1];
    }
  }
  /* Moves to the segment holding virtual key vv (vv < the item's keys). */
  __device__ __forceinline__ void seek(int vv) {
    while (vv >= vend) {
      ++cs;
      const int4 sg = nx;
      if (cs + 1 < nseg) nx = segs[cs + 1];
      kd = sg.x - vend;
      vend += sg.y;
      flags = sg.z;
      mb = sg.w;
    }
  }
};

/* Causal limit (last visible key token) of each row a thread holds. */
template <int WM>
__device__ __forceinline__ void row_limits(int (&toklim)[WM][2], const bsa__attn_args &a,
                                           const bsa__gpu_item &it, int prow0, int wrow0,
                                           int lane) {
#pragma unroll
  for (int mt = 0; mt < WM; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int pr = prow0 + wrow0 + mt * 16 + (lane >> 2) + 8 * h;
      toklim[mt][h] = it.q_begin + pr / a.group + a.causal_off;
    }
}

/* Scores to base-2 logits where a tile needs more than the scale: soft cap,
 * ALiBi, and (need) the masks of flagged segments and the ragged tail.
 * colinfo holds per tile column {key token or -1, mask offset or -1}; the
 * pair of two adjacent columns is one 16-byte shared load, shared by all
 * rows of the thread.  Returns the scale the softmax still has to apply. */
template <int WM, int NB8>
__device__ __forceinline__ float transform_scores(float (&s)[WM][NB8][4], const bsa__attn_args &a,
                                                  const bsa__gpu_item &it, const int *colinfo,
                                                  const int (&toklim)[WM][2], int prow0,
                                                  int wrow0, int lane, bool need) {
  const bool has_cap = a.cap > 0.f;
  const bool has_alibi = a.slopes != nullptr;
  if (!(has_cap || has_alibi || need)) return a.scale_log2;
  const float cap_out = a.cap * 1.4426950408889634f;
  float slope[WM][2];
  int mrow[WM][2];
#pragma unroll
  for (int mt = 0; mt < WM; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int pr = prow0 + wrow0 + mt * 16 + (lane >> 2) + 8 * h;
      slope[mt][h] =
          has_alibi ? a.slopes[min(it.kv_head * a.group + pr % a.group, a.num_qo_heads - 1)]
                    : 0.f;
      mrow[mt][h] = (pr / a.group) * a.mask_C;
    }
#pragma unroll
  for (int n = 0; n < NB8; ++n) {
    const int4 ci = *reinterpret_cast<const int4 *>(colinfo + (n * 8 + 2 * (lane & 3)) * 2);
    const int key[2] = {ci.x, ci.z};
    const int mo[2] = {ci.y, ci.w};
#pragma unroll
    for (int mt = 0; mt < WM; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float x = s[mt][n][2 * h + e];
          x = has_cap ? cap_out * tanh_fast(x * a.cap_in) : x * a.scale_log2;
          if (has_alibi) x += slope[mt][h] * (float)(key[e] - toklim[mt][h]);
          if (need) {
            bool vis = key[e] >= 0 && (!a.causal || key[e] <= toklim[mt][h]);
            if (vis && mo[e] >= 0) vis = a.mask[(int64_t)mo[e] + mrow[mt][h]] != 0;
            if (!vis) x = -INFINITY;
          }
          s[mt][n][2 * h + e] = x;
        }
  }
  return 1.f;
}

/* Online softmax in base 2 over one score tile, without touching O: s
 * becomes P (unnormalised), the running max m and sum l are updated and
 * alpha receives the factor O must be rescaled by.  Rows with no visible
 * key keep m = -inf and P = 0. */
template <int WM, int NB8>
__device__ __forceinline__ void softmax_tile(float (&s)[WM][NB8][4], float (&m)[WM][2],
                                             float (&l)[WM][2], float (&alpha)[WM][2],
                                             float sc) {
#pragma unroll
  for (int mt = 0; mt < WM; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = -INFINITY;
#pragma unroll
      for (int n = 0; n < NB8; ++n) mx = fmaxf(mx, fmaxf(s[mt][n][2 * h], s[mt][n][2 * h + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mnew = fmaxf(m[mt][h], mx * sc);
      const float muse = mnew == -INFINITY ? 0.f : mnew;
      alpha[mt][h] = ex2(m[mt][h] - muse);
      m[mt][h] = mnew;
      float sum = 0.f;
#pragma unroll
      for (int n = 0; n < NB8; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float p = ex2(fmaf(s[mt][n][2 * h + e], sc, -muse));
          s[mt][n][2 * h + e] = p;
          sum += p;
        }
      }
      l[mt][h] = l[mt][h] * alpha[mt][h] + sum;
    }
  }
}

template <int WM, int ND8>
__device__ __forceinline__ void rescale_o(float (&o)[WM][ND8][4], const float (&alpha)[WM][2]) {
#pragma unroll
  for (int mt = 0; mt < WM; ++mt)
#pragma unroll
    for (int d = 0; d < ND8; ++d) {
      o[mt][d][0] *= alpha[mt][0];
      o[mt][d][1] *= alpha[mt][0];
      o[mt][d][2] *= alpha[mt][1];
      o[mt][d][3] *= alpha[mt][1];
    }
}

/* softmax_tile and the O rescale in one step (when no matrix product is in
 * flight on O). */
template <int WM, int NB8, int ND8>
__device__ __forceinline__ void online_softmax(float (&s)[WM][NB8][4], float (&o)[WM][ND8][4],
                                               float (&m)[WM][2], float (&l)[WM][2], float sc) {
  float alpha[WM][2];
  softmax_tile<WM, NB8>(s, m, l, alpha, sc);
  rescale_o<WM, ND8>(o, alpha);
}

/* The A operand (m16n8k16 layout) of keys 16 kk .. 16 kk + 15 from P. */
template <typename T, int NB8>
__device__ __forceinline__ void p_fragment(uint32_t (&pa)[4], const float (&s)[NB8][4], int kk) {
  pa[0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
  pa[1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
  pa[2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
  pa[3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
}

/* Normalises and stores O (and LSE) of the thread's valid rows, or, for a
 * piece of a split item, normalised O and base-2 LSE into the workspace
 * (ytile: which BM-row slice of the item's packed rows this is). */
template <int WM, int ND8, int BM>
__device__ __forceinline__ void epilogue(const float (&o)[WM][ND8][4], const float (&m)[WM][2],
                                         const float (&l)[WM][2], const bsa__attn_args &a,
                                         const bsa__gpu_item &it, int ytile, int prow0,
                                         int wrow0, int nprows, int lane) {
  constexpr int D = ND8 * 8;
  const int group = a.group;
#pragma unroll
  for (int mt = 0; mt < WM; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float lsum = l[mt][h];
      lsum += __shfl_xor_sync(0xffffffffu, lsum, 1);
      lsum += __shfl_xor_sync(0xffffffffu, lsum, 2);
      const int r = wrow0 + mt * 16 + (lane >> 2) + 8 * h;
      if (r >= nprows) continue;
      const int pr = prow0 + r;
      const float inv = lsum > 0.f ? 1.f / lsum : 0.f;
      const float lse2 = lsum > 0.f ? m[mt][h] + __log2f(lsum) : -INFINITY;
      if (it.part < 0) {
        const int64_t tok = it.q_begin + pr / group;
        const int64_t head = (int64_t)it.kv_head * group + pr % group;
        const int64_t base = tok * a.o_st + head * a.o_sh + 2 * (lane & 3);
#pragma unroll
        for (int d = 0; d < ND8; ++d)
          store_pair(a.o, a.o_dtype, base + d * 8, o[mt][d][2 * h] * inv,
                     o[mt][d][2 * h + 1] * inv);
        if (a.lse && (lane & 3) == 0)
          a.lse[tok * a.num_qo_heads + head] = lse2 * 0.6931471805599453f;
      } else {
        const int64_t slot = (int64_t)it.part * a.grid_y + ytile;
        float *po = a.part_o + (slot * BM + r) * D + 2 * (lane & 3);
#pragma unroll
        for (int d = 0; d < ND8; ++d)
          *reinterpret_cast<float2 *>(po + d * 8) =
              make_float2(o[mt][d][2 * h] * inv, o[mt][d][2 * h + 1] * inv);
        if ((lane & 3) == 0) a.part_lse[slot * BM + r] = lse2;
      }
    }
  }
}

/* Q tile loader: packed row r -> token q_begin + (prow0 + r) / group, head
 * kv_head * group + (prow0 + r) % group; dst(r, c) is the shared address
 * of 16-byte chunk c of row r. */
template <int BM, int D, int NT, typename T, class Dst>
__device__ __forceinline__ void load_q(const bsa__attn_args &a, const bsa__gpu_item &it,
                                       int prow0, int nprows, int tid, Dst dst) {
  constexpr int CPR = D / 8;
  const T *q = static_cast<const T *>(a.q);
  for (int idx = tid; idx < BM * CPR; idx += NT) {
    const int r = idx / CPR, c = idx % CPR;
    const bool valid = r < nprows;
    const T *src = q;
    if (valid) {
      const int pr = prow0 + r;
      const int64_t tok = it.q_begin + pr / a.group;
      const int64_t h = (int64_t)it.kv_head * a.group + pr % a.group;
      src = q + tok * a.q_st + h * a.q_sh + c * 8;
    }
    cp_async16(dst(r, c), src, valid);
  }
}


/* Issues the cp.async copies of K/V tile t (BN virtual keys) into the tiles
 * at sK and sV (byte layout off(r, c) of chunk c of row r), and its column
 * records {key token or -1, mask offset or -1}.  Each thread copies chunk
 * tid % (D/8) of rows tid / (D/8) + p * (NT / (D/8)).  Returns 1 when the
 * tile holds a key of a flagged segment or the ragged tail. */
template <int BN, int D, int NT, typename T, class Off>
__device__ __forceinline__ int issue_kv(const bsa__attn_args &a, SegCursor &cur, int nkeys,
                                        int t, uint32_t sK, uint32_t sV, int *colinfo,
                                        int64_t kv_head_off, int tid, Off off) {
  constexpr int CPR = D / 8, RP = NT / CPR, KP = BN / RP;
  static_assert(RP >= 1 && BN % RP == 0, "tile rows must split into passes");
  const T *__restrict__ kp = static_cast<const T *>(a.k);
  const T *__restrict__ vp = static_cast<const T *>(a.v);
  const int r0 = tid / CPR, cc = tid % CPR;
  int flag = 0;
#pragma unroll
  for (int p = 0; p < KP; ++p) {
    const int r = r0 + p * RP;
    const int vv = t * BN + r;
    const bool valid = vv < nkeys;
    if (valid) cur.seek(vv);
    const int key = vv + cur.kd;
    flag |= (!valid) | (cur.flags != 0);
    const int64_t goff = valid ? (int64_t)key * a.k_st + kv_head_off + cc * 8 : 0;
    const uint32_t so = off(r, cc);
    cp_async16(sK + so, kp + goff, valid);
    cp_async16(sV + so, vp + goff, valid);
    if (cc == 0)
      *reinterpret_cast<int2 *>(colinfo + r * 2) =
          make_int2(valid ? key : -1, (valid && (cur.flags & 2)) ? cur.mb + key : -1);
  }
  return flag;
}

} /* namespace bsak */

#endif /* BSA_ATTN_COMMON_CUH */
