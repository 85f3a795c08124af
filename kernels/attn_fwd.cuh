/*
 * kernels/attn_fwd.cuh - forward attention on tensor cores (sm_80 and later).
 *
 * One CTA computes one work item: BM packed query rows (query token x head
 * of the GQA group, token-major so that NHD rows of one token are adjacent)
 * against the item's keys.  The keys are the concatenation of the item's
 * contiguous KV segments (a "virtual" key sequence); tiles of BN virtual keys
 * are loaded row by row with cp.async at arbitrary token offsets, so segment
 * edges cost nothing but a cursor step and short segments pack densely into
 * tiles (no token index list is ever built).
 *
 * Per tile: S = Q K^T with mma.sync m16n8k16 (f16/bf16 in, f32 accumulate),
 * operands from shared memory through ldmatrix (XOR-swizzled 16-byte chunks,
 * so ldmatrix is conflict free), online softmax in registers in base 2 (the
 * scale carries log2 e), P converted in registers to the A operand of
 * O += P V.  K/V tiles go through an ST-stage cp.async pipeline with one
 * barrier per tile.  Masking (causal, per-element BSR masks, the ragged last
 * tile) runs only on tiles that hold a key of a flagged segment: the loaders
 * compute the flag while issuing the tile and the barrier ORs it
 * (__syncthreads_or), so unflagged tiles take the plain path.
 *
 * Warps own 16*WM packed rows each; a warp whose rows are all past the item
 * skips the arithmetic.  Shapes: Q smem [BM][D], K and V smem [ST][BN][D],
 * per stage and column {key index, mask offset} int32 pairs [ST][BN][2]
 * (the host keeps BSR masks under 2^31 bytes).
 *
 * Configuration (Cfg): D head dim, WM m16 tiles per warp, NW warps, BN keys
 * per tile, ST pipeline stages, QREG keeps Q fragments in registers.
 */
#ifndef BSA_ATTN_FWD_CUH
#define BSA_ATTN_FWD_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "kernels/kernels.h"

/* Development switches, measured in docs/kernels.md (defaults = chosen). */
#ifndef BSA_MMA_VOLATILE
#define BSA_MMA_VOLATILE 1
#endif
#ifndef BSA_SKIP_RESCALE
#define BSA_SKIP_RESCALE 0
#endif
#if BSA_MMA_VOLATILE
#define BSA_MMA_ASM asm volatile
#else
#define BSA_MMA_ASM asm
#endif

namespace bsak {

template <int D_, int WM_, int NW_, int BN_, int ST_, bool QREG_, int MINB_>
struct Cfg {
  static constexpr int D = D_, WM = WM_, NW = NW_, BN = BN_, ST = ST_;
  static constexpr bool QREG = QREG_;
  static constexpr int MINB = MINB_;
  static constexpr int NT = NW * 32;
  static constexpr int BM = 16 * WM * NW;
  static constexpr int CPR = D / 8;   /* 16-byte chunks per row */
  static constexpr int RP = NT / CPR; /* rows covered by one load pass */
  static constexpr int KP = BN / RP;  /* load passes per K (or V) tile */
  static constexpr int TILE = BN * D * 2;
  static constexpr int Q_BYTES = BM * D * 2;
  static constexpr int SMEM = Q_BYTES + ST * 2 * TILE + ST * BN * 8;
  static_assert(BM == BSA__GPU_BM, "a CTA holds BSA__GPU_BM packed rows");
  static_assert(RP >= 1 && BN % RP == 0, "tile rows must split into passes");
  static_assert(CPR >= 8, "the swizzle needs 8 chunks per row");
  static_assert(BN % 16 == 0 && D % 16 == 0, "mma tile multiples");
  static_assert(ST >= 2, "at least double buffering");
};

template <typename T> struct Mma;
template <> struct Mma<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4],
                                             uint32_t b0, uint32_t b1) {
    BSA_MMA_ASM(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
  }
};
template <> struct Mma<__half> {
  static __device__ __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4],
                                             uint32_t b0, uint32_t b1) {
    BSA_MMA_ASM(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
  }
};

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

__device__ __forceinline__ void ldsm4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldsm4t(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
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

/* Byte offset of 16-byte chunk c of row r in a [rows][D] tile: chunks are
 * XOR-swizzled by the row's low three bits so that the 8 rows an ldmatrix
 * phase reads fall in 8 different bank groups. */
template <int D> __device__ __forceinline__ uint32_t swz(int r, int c) {
  return (uint32_t)(r * (D * 2) + ((c ^ (r & 7)) << 4));
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

template <class C, typename T>
__global__ void __launch_bounds__(C::NT, C::MINB) attn_fwd(const bsa__attn_args a) {
  constexpr int D = C::D, WM = C::WM, BN = C::BN, ST = C::ST, NT = C::NT;
  constexpr int BM = C::BM, CPR = C::CPR, RP = C::RP, KP = C::KP;
  constexpr int NB8 = BN / 8, ND8 = D / 8;
  extern __shared__ __align__(128) unsigned char smem[];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const bsa__gpu_item it = a.items[blockIdx.x];
  const int group = a.group;
  const int prow0 = blockIdx.y * BM;
  const int nprows = it.rows * group - prow0; /* valid packed rows here */
  if (nprows <= 0) return;

  const T *__restrict__ q = static_cast<const T *>(a.q);
  const T *__restrict__ kp = static_cast<const T *>(a.k);
  const T *__restrict__ vp = static_cast<const T *>(a.v);
  const uint32_t sQ = smem_u32(smem);
  const uint32_t sKV = sQ + C::Q_BYTES;
  /* Per stage and tile column: {key token or -1, mask offset or -1}. */
  int *colinfo = reinterpret_cast<int *>(smem + C::Q_BYTES + ST * 2 * C::TILE);

  /* Q tile: packed row r -> token q_begin + (prow0 + r) / group, head
   * kv_head * group + (prow0 + r) % group. */
  for (int idx = tid; idx < BM * CPR; idx += NT) {
    const int r = idx / CPR, c = idx % CPR;
    const bool valid = r < nprows;
    const T *src = q;
    if (valid) {
      const int pr = prow0 + r;
      const int64_t tok = it.q_begin + pr / group;
      const int64_t h = (int64_t)it.kv_head * group + pr % group;
      src = q + tok * a.q_st + h * a.q_sh + c * 8;
    }
    cp_async16(sQ + swz<D>(r, c), src, valid);
  }
  cp_async_commit();

  /* Key cursor of this thread: its rows in a tile are r0 + p * RP, which
   * grow monotonically over the whole item, so a forward-only walk over the
   * segments maps virtual key v to token v + ckd.  The next segment is
   * loaded one step ahead so that crossing a segment edge does not wait on
   * memory. */
  const int4 *__restrict__ segs = reinterpret_cast<const int4 *>(a.segs) + it.seg_begin;
  const int64_t kv_head_off = (int64_t)it.kv_head * a.k_sh;
  const int r0 = tid / CPR, cc = tid % CPR;
  int cs = 0, cvend = 0, ckd = 0, cflags = 0, cmb = 0;
  int4 nx = make_int4(0, 0, 0, 0);
  if (it.nseg > 0) {
    const int4 s0 = segs[0];
    cvend = s0.y - it.skip;
    ckd = s0.x + it.skip;
    cflags = s0.z;
    cmb = s0.w;
    if (it.nseg > 1) nx = segs[1];
  }
  const int nkeys = it.nkeys;
  const int ntiles = (nkeys + BN - 1) / BN;

  auto issue = [&](int t) -> int {
    const int stage = t % ST;
    const uint32_t sK = sKV + stage * 2 * C::TILE, sV = sK + C::TILE;
    int flag = 0;
#pragma unroll
    for (int p = 0; p < KP; ++p) {
      const int r = r0 + p * RP;
      const int vv = t * BN + r;
      const bool valid = vv < nkeys;
      if (valid) {
        while (vv >= cvend) {
          ++cs;
          const int4 sg = nx;
          if (cs + 1 < it.nseg) nx = segs[cs + 1];
          ckd = sg.x - cvend;
          cvend += sg.y;
          cflags = sg.z;
          cmb = sg.w;
        }
      }
      const int key = vv + ckd;
      flag |= (!valid) | (cflags != 0);
      const int64_t off = valid ? (int64_t)key * a.k_st + kv_head_off + cc * 8 : 0;
      cp_async16(sK + swz<D>(r, cc), kp + off, valid);
      cp_async16(sV + swz<D>(r, cc), vp + off, valid);
      if (cc == 0)
        *reinterpret_cast<int2 *>(colinfo + (stage * BN + r) * 2) =
            make_int2(valid ? key : -1, (valid && (cflags & 2)) ? cmb + key : -1);
    }
    return flag;
  };

  int fbits = 0;
#pragma unroll
  for (int t = 0; t < ST - 1; ++t) {
    if (t < ntiles) fbits |= issue(t) << t;
    cp_async_commit();
  }

  /* Per-row constants of the 2*WM rows this thread holds in the C layout. */
  const int wrow0 = warp * 16 * WM;
  const bool active = wrow0 < nprows;
  /* Only the causal limit of each row stays in registers; the rarer ALiBi
   * slope and mask row offset are recomputed on the tiles that need them. */
  int toklim[WM][2];
#pragma unroll
  for (int mt = 0; mt < WM; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int pr = prow0 + wrow0 + mt * 16 + (lane >> 2) + 8 * h;
      toklim[mt][h] = it.q_begin + pr / group + a.causal_off;
    }

  cp_async_wait<ST - 1>(); /* the Q group */
  __syncthreads();
  uint32_t qf[C::QREG ? WM : 1][C::QREG ? D / 16 : 1][4];
  if (C::QREG) {
#pragma unroll
    for (int mt = 0; mt < WM; ++mt)
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk)
        ldsm4(qf[C::QREG ? mt : 0][C::QREG ? kk : 0],
              sQ + swz<D>(wrow0 + mt * 16 + (lane & 15), kk * 2 + (lane >> 4)));
  }

  float o[WM][ND8][4];
  float m[WM][2], l[WM][2];
#pragma unroll
  for (int mt = 0; mt < WM; ++mt) {
#pragma unroll
    for (int d = 0; d < ND8; ++d) o[mt][d][0] = o[mt][d][1] = o[mt][d][2] = o[mt][d][3] = 0.f;
    m[mt][0] = m[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.f;
  }
  const bool has_cap = a.cap > 0.f;
  const bool has_alibi = a.slopes != nullptr;
  const float cap_out = a.cap * 1.4426950408889634f;

  for (int t = 0; t < ntiles; ++t) {
    cp_async_wait<ST - 2>();
    const int need = __syncthreads_or((fbits >> (t % ST)) & 1);
    {
      const int tn = t + ST - 1;
      if (tn < ntiles) {
        const int f = issue(tn);
        const int b = tn % ST;
        fbits = (fbits & ~(1 << b)) | (f << b);
      }
      cp_async_commit();
    }
    if (!active) continue;
    const int stage = t % ST;
    const uint32_t sK = sKV + stage * 2 * C::TILE, sV = sK + C::TILE;

    float s[WM][NB8][4];
#pragma unroll
    for (int mt = 0; mt < WM; ++mt)
#pragma unroll
      for (int n = 0; n < NB8; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.f;

#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t af[WM][4];
#pragma unroll
      for (int mt = 0; mt < WM; ++mt) {
        if (C::QREG) {
#pragma unroll
          for (int e = 0; e < 4; ++e) af[mt][e] = qf[C::QREG ? mt : 0][C::QREG ? kk : 0][e];
        } else {
          ldsm4(af[mt], sQ + swz<D>(wrow0 + mt * 16 + (lane & 15), kk * 2 + (lane >> 4)));
        }
      }
#pragma unroll
      for (int np = 0; np < BN / 16; ++np) {
        uint32_t b[4];
        ldsm4(b, sK + swz<D>(np * 16 + (lane & 7) + ((lane >> 4) << 3),
                             kk * 2 + ((lane >> 3) & 1)));
#pragma unroll
        for (int mt = 0; mt < WM; ++mt) {
          Mma<T>::run(s[mt][2 * np], af[mt], b[0], b[1]);
          Mma<T>::run(s[mt][2 * np + 1], af[mt], b[2], b[3]);
        }
      }
    }

    /* Scores to base-2 logits.  Plain tiles fold the scale into the
     * exponent below; tiles with a cap, ALiBi or masks transform the scores
     * first, column pair by column pair (the key index and mask offset of
     * two adjacent columns are one 16-byte shared load, shared by all rows
     * of the thread). */
    float sc = a.scale_log2;
    if (has_cap || has_alibi || need) {
      sc = 1.f;
      float slope[WM][2];
      int mrow[WM][2];
#pragma unroll
      for (int mt = 0; mt < WM; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int pr = prow0 + wrow0 + mt * 16 + (lane >> 2) + 8 * h;
          slope[mt][h] =
              has_alibi ? a.slopes[min(it.kv_head * group + pr % group, a.num_qo_heads - 1)]
                        : 0.f;
          mrow[mt][h] = (pr / group) * a.mask_C;
        }
#pragma unroll
      for (int n = 0; n < NB8; ++n) {
        const int4 ci = *reinterpret_cast<const int4 *>(colinfo + (stage * BN + n * 8 + 2 * (lane & 3)) * 2);
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
    }

    /* Online softmax in base 2. */
#pragma unroll
    for (int mt = 0; mt < WM; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float mx = -INFINITY;
#pragma unroll
        for (int n = 0; n < NB8; ++n)
          mx = fmaxf(mx, fmaxf(s[mt][n][2 * h], s[mt][n][2 * h + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float mnew = fmaxf(m[mt][h], mx * sc);
        const float muse = mnew == -INFINITY ? 0.f : mnew;
        const float alpha = ex2(m[mt][h] - muse);
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
        l[mt][h] = l[mt][h] * alpha + sum;
#if BSA_SKIP_RESCALE
        /* Once the running max settles, alpha is 1 for every row of the
         * warp and the O rescale (ND8 * 2 multiplies) is skipped. */
        if (__any_sync(0xffffffffu, alpha != 1.f))
#endif
#pragma unroll
        for (int d = 0; d < ND8; ++d) {
          o[mt][d][2 * h] *= alpha;
          o[mt][d][2 * h + 1] *= alpha;
        }
      }
    }

    /* O += P V. */
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      uint32_t pa[WM][4];
#pragma unroll
      for (int mt = 0; mt < WM; ++mt) {
        pa[mt][0] = Mma<T>::pack(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        pa[mt][1] = Mma<T>::pack(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        pa[mt][2] = Mma<T>::pack(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        pa[mt][3] = Mma<T>::pack(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t b[4];
        ldsm4t(b, sV + swz<D>(kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3),
                              dp * 2 + (lane >> 4)));
#pragma unroll
        for (int mt = 0; mt < WM; ++mt) {
          Mma<T>::run(o[mt][2 * dp], pa[mt], b[0], b[1]);
          Mma<T>::run(o[mt][2 * dp + 1], pa[mt], b[2], b[3]);
        }
      }
    }
  }
  cp_async_wait<0>();

  if (!active) return;
  /* Epilogue: normalise and store O (and LSE) of the valid rows. */
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
        const int64_t slot = (int64_t)it.part * a.grid_y + blockIdx.y;
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

template <class C, typename T> struct Launch {
  static int prepare(int *smem) {
    cudaError_t e = cudaFuncSetAttribute(attn_fwd<C, T>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM);
    if (smem) *smem = C::SMEM;
    return (int)e;
  }
  static int launch(const bsa__attn_args *args, cudaStream_t st) {
    dim3 grid((unsigned)args->num_items, (unsigned)args->grid_y);
    attn_fwd<C, T><<<grid, C::NT, C::SMEM, st>>>(*args);
    return (int)cudaGetLastError();
  }
};

} /* namespace bsak */

#endif /* BSA_ATTN_FWD_CUH */
