/*
 * kernels/attn_fwd_sm90.cuh - forward attention on Hopper tensor cores
 * (wgmma, sm_90a).  Same work items, key cursor, masking and epilogue as
 * the mma.sync kernel (attn_fwd.cuh, attn_common.cuh); what changes is the
 * matrix engine and the shared-memory layout it reads.
 *
 * A CTA holds BSA__GPU_BM = 128 packed query rows and two warpgroups of 64
 * rows each.  Per tile of BN virtual keys, each warpgroup issues
 *     S[64 x BN]  = Q[64 x D] K^T     wgmma m64nBNk16, Q and K from shared
 *                                      memory (both K-major)
 *     O[64 x D]  += P[64 x BN] V       wgmma m64nDk16, P from registers (the
 *                                      S accumulators rounded to f16/bf16),
 *                                      V from shared memory (MN-major)
 * with the online softmax in between on the accumulator registers, whose
 * per-warp layout is the mma.sync one, so the softmax and masking code is
 * shared.  In attn_fwd_sm90 all 256 threads load K/V tiles with cp.async,
 * ST - 1 tiles ahead (one barrier per tile); attn_fwd_ws (the HCfg's WS,
 * D64 and D128) adds a loader warpgroup that issues every copy and
 * publishes tiles through mbarriers (see there).  The segment cursor lets
 * tiles start at any token, as in the mma.sync kernel.  attn_fwd_ws also
 * has a persistent instantiation that walks several items per CTA with its
 * loader running into the next item (see there); the host picks it per
 * plan.  attn_fwd_sm90 (D256 only) runs one work a CTA.
 *
 * Shared-memory layout: every tile [R rows][D] is stored as D/64 panels of
 * [R][64] elements (128-byte rows) with the 128-byte swizzle the wgmma
 * descriptors name (16-byte chunk c of row r at chunk c ^ (r % 8)); panels
 * start on 1024-byte boundaries.  Descriptors:
 *   K-major (Q, K): start = panel + row0 * 128 + k16 * 32, SBO = 1024 (next
 *                   8 rows), LBO unused;
 *   MN-major (V):   start = V + key16 * 2048, LBO = BN * 128 (next panel of
 *                   64 head-dim columns), SBO = 1024 (next 8 keys).
 * cp.async writes through the generic proxy and wgmma reads through the
 * async proxy, so each thread fences (fence.proxy.async) before the barrier
 * that publishes a tile.
 */
#ifndef BSA_ATTN_FWD_SM90_CUH
#define BSA_ATTN_FWD_SM90_CUH

#include <cuda.h>
#include <string.h>

#include "kernels/attn_common.cuh"
#include "kernels/attn_fwd.cuh"
#include "kernels/wgmma_ops.cuh"

namespace bsak {

template <int D_, int BN_, int ST_, bool WS_ = false, int QP_ = 0, bool PRE_ = false,
          bool BARS_FIRST_ = false>
struct HCfg {
  static constexpr int D = D_, BN = BN_, ST = ST_;
  /* PRE: a persistent attn_fwd_ws warpgroup issues the next work's first
   * Q K^T before the current work's epilogue.  BARS_FIRST: attn_fwd_ws's
   * tile flags and mbarriers lie in front of the Q slots instead of after
   * the column records.  Both are taken where they measured faster
   * (docs/kernels.md run 12: D64, dense +5%; D128 dense lost 4% with PRE). */
  static constexpr bool PRE = PRE_, BARS_FIRST = BARS_FIRST_;
  /* Q slots of a persistent CTA (attn_fwd_ws only; 0: ST) */
  static constexpr int QP = QP_ > 0 ? QP_ : ST;
  /* WS: the warp-specialised kernel (attn_fwd_ws): a third warpgroup, of
   * which one warp loads. */
  static constexpr bool WS = WS_;
  static constexpr int NT = WS ? 384 : 256; /* two math warpgroups (and the loader's) */
  static constexpr int BM = 128;
  static constexpr int TILE = BN * D * 2;
  static constexpr int Q_BYTES = BM * D * 2;
  /* Q slots: 1, or QP for a persistent CTA; 1024 bytes of slack to align
   * the panels; WS: 256 bytes of flags and barriers (BARS_FIRST: before
   * the alignment, so the 1280 bytes cover any start). */
  static constexpr int smem(bool persist) {
    return 1024 + (persist ? QP : 1) * Q_BYTES + ST * 2 * TILE + ST * BN * 8 + (WS ? 256 : 0);
  }
  static constexpr int SMEM_LIMIT = 232448; /* 227 KB per block */
  /* Persistent CTAs: the warp-specialised kernel only (attn_fwd_sm90 runs
   * one work a CTA). */
  static constexpr bool CAN_PERSIST = WS && smem(true) <= SMEM_LIMIT;
  static_assert(BM == BSA__GPU_BM, "a CTA holds BSA__GPU_BM packed rows");
  static_assert(D % 64 == 0, "panels of 64 head-dim columns");
  static_assert(BN % 16 == 0 && BN <= 256 && (BN * 128) % 1024 == 0, "tile rows");
  static_assert(ST >= 2, "at least double buffering");
  static_assert(smem(false) <= SMEM_LIMIT, "227 KB of shared memory per block");
};

/* Byte offset of 16-byte chunk c of row r in an [R][D] tile of panels. */
template <int R> __device__ __forceinline__ uint32_t pswz(int r, int c) {
  return (uint32_t)((c >> 3) * (R * 128) + r * 128 + (((c & 7) ^ (r & 7)) << 4));
}

/* wgmma shared-memory descriptor with the 128-byte swizzle. */
__device__ __forceinline__ uint64_t wg_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return (uint64_t)((addr & 0x3FFFFu) >> 4) | ((uint64_t)(lbo >> 4) << 16) |
         ((uint64_t)(sbo >> 4) << 32) | (1ull << 62);
}

__device__ __forceinline__ void wg_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wg_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void wg_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
/* After a wgmma wait: the compiler must not read the accumulators before. */
template <int N> __device__ __forceinline__ void fence_regs(float (&x)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(x[i][e])::"memory");
}

/* Epilogue of a warp's 16 rows of a whole item through shared memory: the
 * warp writes its normalised O (f16/bf16) into its own rows of the item's Q
 * slot, which no product reads any more (the item's last Q K^T is complete)
 * and no copy refills yet (attn_fwd_sm90's loader writes the other QS - 1
 * slots until the math starts its next item, after the next barrier;
 * attn_fwd_ws's loader waits for the slot's qempty), with the slot's
 * 128-byte swizzle, by stmatrix (four 8x8 matrices, two 8-column chunks of
 * 16 rows, per instruction: the accumulator layout is the matrix fragment
 * layout), then stores whole 16-byte chunks, 16 lanes per 256-byte row,
 * where the accumulator layout stores 4 bytes per lane and half of a
 * 32-byte sector per row and instruction.  The rows a lane stores step by
 * 32 / ND8, so its (token, head) moves by carries instead of a division per
 * row.  LSE as epilogue().  stage_o is the part up to O in shared memory
 * (attn_fwd_ws then stores whole slices by TMA, see there). */
template <int ND8, int BM>
__device__ __forceinline__ void stage_o(const float (&o)[1][ND8][4], const float (&m)[1][2],
                                        const float (&l)[1][2], const bsa__attn_args &a,
                                        const bsa__gpu_item &it, int prow0, int wrow0, int nprows,
                                        int lane, uint32_t slot) {
  static_assert(ND8 % 2 == 0 && ND8 <= 32, "pairs of chunks, a row within a warp's pass");
  const int group = a.group;
  float inv[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float lsum = l[0][h];
    lsum += __shfl_xor_sync(0xffffffffu, lsum, 1);
    lsum += __shfl_xor_sync(0xffffffffu, lsum, 2);
    const int r = wrow0 + (lane >> 2) + 8 * h;
    inv[h] = lsum > 0.f ? 1.f / lsum : 0.f;
    if (r < nprows && a.lse && (lane & 3) == 0) {
      const int pr = prow0 + r;
      const float lse2 = lsum > 0.f ? m[0][h] + __log2f(lsum) : -INFINITY;
      a.lse[(int64_t)(it.q_begin + pr / group) * a.num_qo_heads +
            (int64_t)it.kv_head * group + pr % group] = lse2 * 0.6931471805599453f;
    }
  }
  /* Lane l gives the address of row l % 8 of matrix l / 8: matrices
   * (rows 0-7, chunk d), (rows 8-15, d), (0-7, d + 1), (8-15, d + 1). */
  const int mj = lane >> 3;
  const uint32_t mrow = wrow0 + (lane & 7) + 8 * (mj & 1);
#pragma unroll
  for (int d = 0; d < ND8; d += 2) {
    uint32_t v[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int dd = d + (j >> 1), h = j & 1;
      const float x = o[0][dd][2 * h] * inv[h], y = o[0][dd][2 * h + 1] * inv[h];
      v[j] = a.o_dtype == 1 ? pack2<__half>(x, y) : pack2<__nv_bfloat16>(x, y);
    }
    asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(
                     slot + pswz<BM>(mrow, d + (mj >> 1))),
                 "r"(v[0]), "r"(v[1]), "r"(v[2]), "r"(v[3])
                 : "memory");
  }
}

template <int ND8, int BM>
__device__ __forceinline__ void epilogue_smem(const float (&o)[1][ND8][4], const float (&m)[1][2],
                                              const float (&l)[1][2], const bsa__attn_args &a,
                                              const bsa__gpu_item &it, int prow0, int wrow0,
                                              int nprows, int lane, uint32_t slot) {
  stage_o<ND8, BM>(o, m, l, a, it, prow0, wrow0, nprows, lane, slot);
  __syncwarp();
  const int group = a.group;
  constexpr int RS = 32 / ND8; /* rows a lane steps by */
  const int c = lane % ND8;
  int r = wrow0 + lane / ND8;
  int64_t tok = it.q_begin + (prow0 + r) / group;
  int hh = (prow0 + r) % group;
  uint16_t *const ob = static_cast<uint16_t *>(a.o) + (int64_t)it.kv_head * group * a.o_sh + c * 8;
#pragma unroll
  for (int i = 0; i < ND8 / 2; ++i, r += RS) {
    if (i > 0) {
      hh += RS;
      while (hh >= group) {
        hh -= group;
        ++tok;
      }
    }
    if (r >= nprows) continue;
    int4 v;
    asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "r"(slot + pswz<BM>(r, c))
                 : "memory");
    *reinterpret_cast<int4 *>(ob + tok * a.o_st + hh * a.o_sh) = v;
  }
}

/* load_q for attn_fwd_ws's loader: the same copies, but a thread's rows
 * step by NT / (D / 8), so its (token, head) moves by a quotient and a
 * carry instead of two integer divisions per 16-byte chunk (at an item's
 * start the loader is what the math waits for, docs/kernels.md run 8). */
template <int BM, int D, int NT, typename T, class Dst>
__device__ __forceinline__ void load_q_step(const bsa__attn_args &a, const bsa__gpu_item &it,
                                            int prow0, int nprows, int tid, Dst dst) {
  constexpr int CPR = D / 8, RS = NT / CPR;
  static_assert(NT % CPR == 0 && BM % RS == 0, "whole rows per pass");
  const T *q = static_cast<const T *>(a.q);
  const int group = a.group, c = tid % CPR;
  const int dq = RS / group, dh = RS % group;
  int r = tid / CPR;
  int64_t tok = it.q_begin + (prow0 + r) / group;
  int hh = (prow0 + r) % group;
  const T *qh = q + (int64_t)it.kv_head * group * a.q_sh + c * 8;
#pragma unroll 4
  for (int i = 0; i < BM / RS; ++i, r += RS) {
    const bool valid = r < nprows;
    cp_async16(dst(r, c), valid ? qh + tok * a.q_st + hh * a.q_sh : q, valid);
    tok += dq;
    hh += dh;
    if (hh >= group) {
      hh -= group;
      ++tok;
    }
  }
}

/* Profiling builds (-DBSA_PROFILE): thread 0 of each warpgroup of the
 * first BSA__PROF_STREAMS / 2 CTAs stamps clock64 at the phases of the
 * loop into stream 2 * CTA + warpgroup of a.prof: words 0..7 = records,
 * globaltimer and clock64 at start and end, SM id; then records of two
 * words {clock64, tag | tile << 8 | list entry << 32}.  Tags: PROF_* below.
 * Other builds compile the calls away. */
enum {
  PROF_ITEM = 1, /* item start (math) */
  PROF_WAIT = 2, /* tile: before the copy wait */
  PROF_BAR = 3,  /* tile: after the barrier */
  PROF_QKI = 4,  /* tile: Q K^T issued */
  PROF_LD = 5,   /* tile: loader's copies issued */
  PROF_QK = 6,   /* tile: Q K^T complete */
  PROF_SM = 7,   /* tile: softmax and P done */
  PROF_PV = 8,   /* tile: P V complete */
  PROF_EPI = 9   /* item: epilogue done */
};
struct Prof {
#ifdef BSA_PROFILE
  unsigned long long *p;
  int n;
  static __device__ __forceinline__ unsigned long long clk() {
    unsigned long long c;
    asm volatile("mov.u64 %0, %%clock64;\n" : "=l"(c)::"memory");
    return c;
  }
  static __device__ __forceinline__ unsigned long long gtime() {
    unsigned long long c;
    asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(c)::"memory");
    return c;
  }
  __device__ __forceinline__ void init(const bsa__attn_args &a, int tid) {
    p = nullptr;
    n = 0;
    if (a.prof && (tid & 127) == 0 && blockIdx.x < BSA__PROF_STREAMS / 2) {
      p = a.prof + (size_t)(blockIdx.x * 2 + (tid >> 7)) * BSA__PROF_WORDS;
      unsigned smid;
      asm volatile("mov.u32 %0, %%smid;\n" : "=r"(smid));
      p[1] = gtime();
      p[3] = clk();
      p[5] = smid;
    }
  }
  __device__ __forceinline__ void stamp(int tag, int r, int t) {
    if (p && n < BSA__PROF_CAP) {
      const unsigned long long c = clk();
      p[8 + 2 * n] = c;
      p[9 + 2 * n] = (unsigned long long)tag | ((unsigned long long)(t & 0xffffff) << 8) |
                     ((unsigned long long)r << 32);
      ++n;
    }
  }
  __device__ __forceinline__ void finish() {
    if (p) {
      p[4] = clk();
      p[2] = gtime();
      p[0] = n;
    }
  }
#else
  __device__ __forceinline__ void init(const bsa__attn_args &, int) {}
  __device__ __forceinline__ void stamp(int, int, int) {}
  __device__ __forceinline__ void finish() {}
#endif
};

/* A warp's state at an item's start: its rows' token limits, the running
 * max and sum, and O (and with ZERO_S the scores' registers) zero. */
template <int ND8, int NB8, bool ZERO_S = true>
__device__ __forceinline__ void start_item(int (&toklim)[1][2], float (&m)[1][2], float (&l)[1][2],
                                           float (&o)[ND8][4], float (&s)[NB8][4],
                                           const bsa__attn_args &a, const bsa__gpu_item &it,
                                           int prow0, int wrow0, int lane) {
  row_limits<1>(toklim, a, it, prow0, wrow0, lane);
  m[0][0] = m[0][1] = -INFINITY;
  l[0][0] = l[0][1] = 0.f;
#pragma unroll
  for (int d = 0; d < ND8; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.f;
  if constexpr (ZERO_S) {
#pragma unroll
    for (int n = 0; n < NB8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
  }
}

/* S = Q K^T of one tile on the tensor cores, issued (wg_wait<0> waits for
 * it): the warpgroup's 64 rows of Q from sQwg, BN keys from sK, panels of
 * 64 head-dim columns. */
template <int D, int BN, int BM, typename T>
__device__ __forceinline__ void qk_issue(float (&s)[BN / 8][4], uint32_t sQwg, uint32_t sK) {
  wg_fence();
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const uint32_t koff = (kk & 3) * 32; /* 16 columns = 32 bytes */
    const uint64_t da = wg_desc(sQwg + (kk >> 2) * (BM * 128) + koff, 16, 1024);
    const uint64_t db = wg_desc(sK + (kk >> 2) * (BN * 128) + koff, 16, 1024);
    Wgmma<BN, T>::ss(s, da, db, kk > 0);
  }
  wg_commit();
}

/* O += P V of one tile (P in registers, V's BN rows from sV), waited on. */
template <int D, int BN, typename T>
__device__ __forceinline__ void pv_products(float (&o)[D / 8][4], const uint32_t (&pa)[BN / 16][4],
                                            uint32_t sV) {
  wg_fence();
#pragma unroll
  for (int kk = 0; kk < BN / 16; ++kk)
    Wgmma<D, T>::rs(o, pa[kk], wg_desc(sV + kk * 2048, BN * 128, 1024));
  wg_commit();
  wg_wait<0>();
  fence_regs<D / 8>(o);
}

/* The rest of a tile once S = Q K^T is in s: the scores' transform (cap,
 * ALiBi, masks where need) and the online softmax, P rounded into
 * registers, and O += P V from sV (waited on); stamps PROF_SM between. */
template <int D, int BN, typename T>
__device__ __forceinline__ void softmax_pv(float (&s)[1][BN / 8][4], float (&o)[1][D / 8][4],
                                           float (&m)[1][2], float (&l)[1][2],
                                           const bsa__attn_args &a, const bsa__gpu_item &it,
                                           const int *colinfo, const int (&toklim)[1][2],
                                           int prow0, int wrow0, int lane, bool need,
                                           uint32_t sV, Prof &prof, int r, int t) {
  constexpr int NB8 = BN / 8, ND8 = D / 8;
  const float sc =
      transform_scores<1, NB8>(s, a, it, colinfo, toklim, prow0, wrow0, lane, need);
  online_softmax<1, NB8, ND8>(s, o, m, l, sc);
  uint32_t pa[BN / 16][4];
#pragma unroll
  for (int kk = 0; kk < BN / 16; ++kk) p_fragment<T, NB8>(pa[kk], s[0], kk);
  prof.stamp(PROF_SM, r, t);
  pv_products<D, BN, T>(o[0], pa, sV);
}

/* The works of one CTA.  Work w = (item w / grid_y, row slice w % grid_y).
 * A persistent CTA takes the works of its list in order (the host assigns
 * them, balanced by cost; works and their count fit 31 bits); otherwise
 * each CTA takes one, its block index. */
template <bool PERSIST, int BM, int BN> struct CtaWorks {
  int nwork, wl0, wln; /* all works; this CTA's list: entries [wl0, wl0 + wln) */
  __device__ __forceinline__ explicit CtaWorks(const bsa__attn_args &a)
      : nwork((int)min((int64_t)a.num_items * a.grid_y, (int64_t)INT_MAX)), wl0(0), wln(1) {
    if (PERSIST) {
      wl0 = a.cta_off[blockIdx.x];
      wln = a.cta_off[blockIdx.x + 1] - wl0;
    }
  }
  /* The CTA's r-th work, nwork past its last. */
  __device__ __forceinline__ int work_of(const bsa__attn_args &a, int r) const {
    if (r >= wln) return nwork;
    return PERSIST ? a.work_list[wl0 + r] : (int)blockIdx.x;
  }
  /* Work w's first packed row and rows in its slice (prow0w, nprowsw); returns
   * its tiles of BN keys, 0 when the slice is empty. */
  static __device__ __forceinline__ int slice(const bsa__attn_args &a, int w,
                                              const bsa__gpu_item &itw, int &prow0w,
                                              int &nprowsw) {
    prow0w = (w % a.grid_y) * BM;
    nprowsw = itw.rows * a.group - prow0w;
    return nprowsw > 0 ? (itw.nkeys + BN - 1) / BN : 0;
  }
};

/* A wgmma kernel's dynamic shared memory with QS Q slots: from its first
 * 1024-byte boundary (C::BARS_FIRST: the first past 256 bytes of flags and
 * barriers) the Q slots (sQ0), then the ST stages of K and V (sKV), then
 * the stages' column records (colinfo, [ST][BN] int2). */
template <class C, int QS> struct SmemCarve {
  uint32_t sQ0, sKV;
  int *colinfo;
  __device__ __forceinline__ explicit SmemCarve(unsigned char *smem_raw) {
    const uint32_t raw = smem_u32(smem_raw);
    sQ0 = (raw + (C::BARS_FIRST ? 256u : 0u) + 1023u) & ~1023u;
    unsigned char *smem = smem_raw + (sQ0 - raw);
    sKV = sQ0 + QS * C::Q_BYTES;
    colinfo = reinterpret_cast<int *>(smem + QS * C::Q_BYTES + C::ST * 2 * C::TILE);
  }
};

template <class C, typename T, bool PERSIST>
__global__ void __launch_bounds__(C::NT, 1) attn_fwd_sm90(const bsa__attn_args a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int D = C::D, BN = C::BN, ST = C::ST, NT = C::NT, BM = C::BM;
  static_assert(!PERSIST, "one work a CTA (HCfg::CAN_PERSIST is false without WS)");
  constexpr int QS = 1;
  constexpr int NB8 = BN / 8, ND8 = D / 8;
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const SmemCarve<C, QS> carve(smem_raw);
  const uint32_t sQ0 = carve.sQ0, sKV = carve.sKV;
  int *const colinfo = carve.colinfo;
  auto off = [](int r, int c) { return pswz<BN>(r, c); };

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2;
  Prof prof;
  prof.init(a, tid);
  const CtaWorks<PERSIST, BM, BN> works(a);
  const int nwork = works.nwork, wl0 = works.wl0, wln = works.wln;
  auto work_of = [&](int r) -> int { return works.work_of(a, r); };
  auto slice = [&](int w, const bsa__gpu_item &itw, int &prow0w, int &nprowsw) -> int {
    return works.slice(a, w, itw, prow0w, nprowsw);
  };
  auto q_dst = [&](int r, int c) { return sQ0 + pswz<BM>(r, c); };

  /* Loader: the CTA's tiles (of its one work) go to stage n % ST, Q with
   * the first tile (same copy group, so the wait for that tile covers
   * it).  The loader runs ST - 1 tiles ahead of the math. */
  int lr = -1, lt = 0, lnt = 0, ln = 0;
  bsa__gpu_item lit;
  SegCursor lcur;
  int64_t lkv = 0;
  int fbits = 0;
  auto load_next = [&]() {
    while (lt >= lnt) {
      int lprow0, lnprows;
      const int lw = work_of(++lr);
      if (lw >= nwork) return;
      lit = a.items[lw / a.grid_y];
      lnt = slice(lw, lit, lprow0, lnprows);
      lt = 0;
      if (lnt > 0) {
        load_q<BM, D, NT, T>(a, lit, lprow0, lnprows, tid, q_dst);
        lcur.init(a, lit);
        lkv = (int64_t)lit.kv_head * a.k_sh;
      }
    }
    const int st = ln % ST;
    const uint32_t sK = sKV + st * 2 * C::TILE;
    const int f = issue_kv<BN, D, NT, T>(a, lcur, lit.nkeys, lt, sK, sK + C::TILE,
                                         colinfo + st * BN * 2, lkv, tid, off);
    fbits = (fbits & ~(1 << st)) | (f << st);
    ++lt;
    ++ln;
  };
#pragma unroll
  for (int i = 0; i < ST - 1; ++i) {
    load_next();
    cp_async_commit();
  }

  /* Warp w holds rows 16 w .. 16 w + 15 (wgmma: warp w % 4 of warpgroup
   * w / 4); a warpgroup whose 64 rows are all past the item skips the math
   * (wgmma is warpgroup-wide, so the skip is too).  The math reads its
   * work's id and item again (the loader's loads brought them into L1). */
  const int wrow0 = warp * 16;
  int cn = 0; /* stream tiles consumed */
  int r = 0;
  for (int w = work_of(0); w < nwork; w = work_of(++r)) {
    const bsa__gpu_item it = a.items[w / a.grid_y];
    int prow0, nprows;
    const int ntiles = slice(w, it, prow0, nprows);
    if (nprows <= 0) continue;
    prof.stamp(PROF_ITEM, r, ntiles);
    const bool active = wg * 64 < nprows;
    int toklim[1][2];
    float o[1][ND8][4], s[1][NB8][4], m[1][2], l[1][2];
    start_item(toklim, m, l, o[0], s[0], a, it, prow0, wrow0, lane);
    const uint32_t sQwg = sQ0 + wg * 64 * 128;

    for (int t = 0; t < ntiles; ++t) {
      /* An item's first tile also waits for its Q (same or earlier copy
       * group). */
      prof.stamp(PROF_WAIT, r, t);
      cp_async_wait<ST - 2>();
      fence_proxy_async();
      const int stage = cn % ST;
      ++cn;
      const int need = __syncthreads_or((fbits >> stage) & 1);
      prof.stamp(PROF_BAR, r, t);
      const uint32_t sK = sKV + stage * 2 * C::TILE, sV = sK + C::TILE;
      if (!active) {
        load_next();
        cp_async_commit();
        continue;
      }
      /* S = Q K^T goes to the tensor cores first and the loader issues the
       * next tile's copies while they compute (the loader writes the stage
       * the previous tile used, whose products are complete).  The loader
       * is called on both paths so that every wgmma and its wait stay on
       * one path (split over two, ptxas serialises them, warning C7518). */
      qk_issue<D, BN, BM, T>(s[0], sQwg, sK);
      prof.stamp(PROF_QKI, r, t);
      load_next();
      cp_async_commit();
      prof.stamp(PROF_LD, r, t);
      wg_wait<0>();
      fence_regs<NB8>(s[0]);
      prof.stamp(PROF_QK, r, t);

      softmax_pv<D, BN, T>(s, o, m, l, a, it, colinfo + stage * BN * 2, toklim, prow0, wrow0,
                           lane, need != 0, sV, prof, r, t);
      prof.stamp(PROF_PV, r, t);
    }
    if (!active) continue;
    /* Whole items with tiles through shared memory (16-byte aligned O);
     * pieces of split items (float32 partials) and items without keys
     * (whose Q slot may be in flight) store directly. */
    if (it.part < 0 && ntiles > 0 && ((uintptr_t)a.o & 15) == 0)
      epilogue_smem<ND8, BM>(o, m, l, a, it, prow0, wrow0, nprows, lane, sQ0);
    else
      epilogue<1, ND8, BM>(o, m, l, a, it, w % a.grid_y, prow0, wrow0, nprows, lane);
    prof.stamp(PROF_EPI, r, ntiles);
  }
  cp_async_wait<0>();
  prof.finish();
#else
  __trap(); /* only built for sm_90a; the host never selects it elsewhere */
#endif
}

/* mbarrier operations (shared::cta, 64-bit barrier words). */
__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
/* Arrives on bar once all of this thread's earlier cp.async copies are
 * complete (the arrival counts towards the barrier's expected count). */
__device__ __forceinline__ void cp_async_mbar_arrive(uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
/* Arrives on bar and adds bytes to the transaction count its phase waits
 * for (the TMA copies complete them). */
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, int bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}
/* One tile of BN keys from key0 of kv head h by the tensor-memory
 * accelerator: D / 64 boxes of [BN][64] through map m (bsa__kv_maps_encode:
 * its dimensions are (D, key, head) for BSA__TMA_HND and (D, head, key) for
 * BSA__TMA_NHD), each into its panel at dst with the 128-byte swizzle the
 * panels use; they complete bytes on bar. */
template <int D, int BN>
__device__ __forceinline__ void tma_tile(const CUtensorMap *m, uint32_t dst, uint32_t bar, int key0,
                                         int h, bool nhd) {
  const int c1 = nhd ? h : key0, c2 = nhd ? key0 : h;
#pragma unroll
  for (int p = 0; p < D / 64; ++p)
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, "
        "{%2, %3, %4}], [%5];\n" ::"r"(dst + p * (BN * 128)),
        "l"(reinterpret_cast<uint64_t>(m)), "r"(p * 64), "r"(c1), "r"(c2), "r"(bar)
        : "memory");
}
/* A math warpgroup's slice of O, 64 packed rows (D / 64 panels of [64][64]
 * at src, 128-byte swizzled), to global memory through the O map (NHD:
 * dimensions (D, head, token), box (64, group, 64 / group); HND: (D,
 * token, head), box (64, 64, 1)), and waits until the copies have read
 * shared memory (the slot may then be refilled). */
template <int D, int BM>
__device__ __forceinline__ void tma_store_o(const CUtensorMap *m, uint32_t src, int c1, int c2) {
#pragma unroll
  for (int p = 0; p < D / 64; ++p)
    asm volatile(
        "cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%1, %2, %3}], [%4];\n" ::"l"(
            reinterpret_cast<uint64_t>(m)),
        "r"(p * 64), "r"(c1), "r"(c2), "r"(src + p * (BM * 128))
        : "memory");
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
  asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
}
/* Waits until the barrier's phase of the given parity is complete. */
__device__ __forceinline__ void mbar_wait(uint32_t bar, int parity) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra WAIT_%=;\n"
      "}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

/* Warp-specialised form of the kernel above (C::WS): warps 0-7 are the two
 * math warpgroups and run the same per-tile products, masking and softmax;
 * the third warpgroup loads.  The loader warpgroup walks the CTA's works, loads each
 * item's Q into one of QS slots and its K/V tiles into a ring of ST stages,
 * and publishes each with an mbarrier that its copies complete
 * (cp.async.mbarrier.arrive): full[s] for a stage (the tile's mask flag
 * goes with it), qfull[q] for a Q slot.  Each math warp arrives on empty[s]
 * after the P V that read stage s and on qempty[q] after its epilogue
 * (which stages O through the slot), and the loader waits on those before
 * it refills.  So the math warps never issue copies (issuing them stalled
 * the math for about 1 us a tile and 2.4 us at an item's first tile,
 * docs/kernels.md run 8), the two warpgroups are not re-synchronised every
 * tile, and the loader runs up to ST tiles and one item ahead.  A tile
 * whose BN keys lie in one segment (dense, whole blocks, long variable
 * blocks) is loaded by the tensor-memory accelerator when the host encoded
 * maps for k and v (a.tma): one loader thread issues its boxes and the
 * transaction count of full[s] waits for their bytes, so the loader's
 * issue no longer scales with the tile's 16-byte chunks (run 9); tiles at
 * segment edges go through cp.async as before.  Works of
 * no tiles (empty rows) are skipped by the loader and written by the math
 * warps directly, as above.  Barrier phases: the k-th use of stage s (or
 * slot q) completes phase k of full and of empty, waited on with parity
 * k & 1. */
template <class C, typename T, bool PERSIST>
__global__ void __launch_bounds__(C::NT, 1)
    attn_fwd_ws(const bsa__attn_args a, const __grid_constant__ CUtensorMap tmk,
                const __grid_constant__ CUtensorMap tmv, const __grid_constant__ CUtensorMap tmo) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int D = C::D, BN = C::BN, ST = C::ST, BM = C::BM;
  constexpr int QS = PERSIST ? C::QP : 1;
  constexpr int NB8 = BN / 8, ND8 = D / 8;
  constexpr int NMATH = 256; /* threads of the two math warpgroups */
  static_assert(C::NT == NMATH + 128, "a loader warpgroup");
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const SmemCarve<C, QS> carve(smem_raw);
  const uint32_t sQ0 = carve.sQ0, sKV = carve.sKV;
  int *const colinfo = carve.colinfo;
  /* [ST][4] mask flags of the tile in stage s, one per loader warp */
  int *flags = C::BARS_FIRST ? reinterpret_cast<int *>(smem_raw) : colinfo + ST * BN * 2;
  static_assert(16 * ST + 8 + 8 * (2 * ST + 2 * QS) <= 256, "flags and barriers in 256 bytes");
  /* Barriers: full[ST], empty[ST], qfull[QS], qempty[QS], 8 bytes each. */
  const uint32_t bars = (smem_u32(flags + 4 * ST) + 7u) & ~7u;
  auto full = [&](int s) { return bars + 8u * s; };
  auto empty = [&](int s) { return bars + 8u * (ST + s); };
  auto qfull = [&](int q) { return bars + 8u * (2 * ST + q); };
  auto qempty = [&](int q) { return bars + 8u * (2 * ST + QS + q); };
  auto off = [](int r, int c) { return pswz<BN>(r, c); };

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2;
  const CtaWorks<PERSIST, BM, BN> works(a);
  const int nwork = works.nwork, wl0 = works.wl0, wln = works.wln;
  auto work_of = [&](int r) -> int { return works.work_of(a, r); };
  auto slice = [&](int w, const bsa__gpu_item &itw, int &prow0w, int &nprowsw) -> int {
    return works.slice(a, w, itw, prow0w, nprowsw);
  };
  if (tid == 0) {
    /* full: 128 copy arrivals of the loader warpgroup and its 4 lanes 0
     * after the flags; empty and qempty: the 8 math warps; qfull: 128
     * copy arrivals. */
    for (int s = 0; s < ST; ++s) {
      mbar_init(full(s), 132);
      mbar_init(empty(s), 8);
    }
    for (int q = 0; q < QS; ++q) {
      mbar_init(qfull(q), 128);
      mbar_init(qempty(q), 8);
    }
  }
  __syncthreads();

  if (wg == 2) {
    /* The loader warpgroup gives registers to the math warpgroups.  The
     * launch bound of 384 threads caps all at 168, and the CTA holds
     * 384 x 168 registers from its launch on: setmaxnreg.inc waits for
     * registers that a dec gave back, so 2 x 128 x 224 + 128 x 56 must
     * (and do) stay within those 64512 (232 with 48 hung, run 8 call 3).
     * All four warps issue copies: one warp alone issued a 64 KB tile in
     * 6.5 us (run 8, call 2). */
    asm volatile("setmaxnreg.dec.sync.aligned.u32 56;\n" ::: "memory");
    const int ltid = tid - NMATH;
    int n = 0, qord = 0;
    for (int r = 0;; ++r) {
      const int w = work_of(r);
      if (w >= nwork) break;
      const bsa__gpu_item it = a.items[w / a.grid_y];
      int prow0, nprows;
      const int ntiles = slice(w, it, prow0, nprows);
      if (ntiles == 0) continue;
      const int q = qord % QS, qk = qord / QS;
      ++qord;
      if (qk > 0) mbar_wait(qempty(q), (qk - 1) & 1);
      load_q_step<BM, D, 128, T>(a, it, prow0, nprows, ltid, [=](int rr, int c) {
        return sQ0 + q * C::Q_BYTES + pswz<BM>(rr, c);
      });
      cp_async_mbar_arrive(qfull(q));
      SegCursor cur;
      cur.init(a, it);
      const int64_t kvo = (int64_t)it.kv_head * a.k_sh;
      for (int t = 0; t < ntiles; ++t, ++n) {
        const int s = n % ST, k = n / ST;
        if (k > 0) mbar_wait(empty(s), (k - 1) & 1);
        const uint32_t sK = sKV + s * 2 * C::TILE;
        /* A tile of BN keys inside one segment is two boxes of the tensor
         * maps, issued by one thread; others (segment edges, an item's
         * ragged end) go row by row through cp.async.  Every loader
         * thread's cursor reaches the same decision. */
        const int v0 = t * BN;
        bool whole = false;
        if (a.tma) {
          cur.seek(v0);
          whole = v0 + BN <= it.nkeys && v0 + BN <= cur.vend;
        }
        int f;
        if (whole) {
          const int key0 = v0 + cur.kd;
          static_assert(BN == 128, "a loader thread a key");
          *reinterpret_cast<int2 *>(colinfo + (s * BN + ltid) * 2) =
              make_int2(key0 + ltid, (cur.flags & 2) ? cur.mb + key0 + ltid : -1);
          f = cur.flags != 0;
          if (ltid == 0) {
            mbar_arrive_expect_tx(full(s), 2 * C::TILE);
            tma_tile<D, BN>(&tmk, sK, full(s), key0, it.kv_head, a.tma == BSA__TMA_NHD);
            tma_tile<D, BN>(&tmv, sK + C::TILE, full(s), key0, it.kv_head,
                            a.tma == BSA__TMA_NHD);
          } else {
            mbar_arrive(full(s));
          }
        } else {
          f = issue_kv<BN, D, 128, T>(a, cur, it.nkeys, t, sK, sK + C::TILE,
                                      colinfo + s * BN * 2, kvo, ltid, off);
          cp_async_mbar_arrive(full(s));
        }
        /* The warp's flag and column records (written by its lanes above)
         * go with its lane 0's arrival, which releases them. */
        const int need = __any_sync(0xffffffffu, f);
        if (lane == 0) {
          flags[4 * s + (warp - 8)] = need;
          mbar_arrive(full(s));
        }
      }
    }
    cp_async_wait<0>();
    return;
  }

  /* The math warps.  Warp w holds rows 16 w .. 16 w + 15 (wgmma: warp w % 4
   * of warpgroup w / 4); a warpgroup whose 64 rows are all past the item
   * skips the math but still releases every stage.  The next work's id and
   * item are loaded one work ahead. */
  asm volatile("setmaxnreg.inc.sync.aligned.u32 224;\n" ::: "memory");
  const int wrow0 = warp * 16;
  Prof prof;
  prof.init(a, tid);
  int cn = 0, qord = 0;
  int r = 0;
  int w = work_of(0);
  bsa__gpu_item itn;
  if (w < nwork) itn = a.items[w / a.grid_y];
  /* kPre (C::PRE): pre says that this warpgroup issued the current work's
   * first Q K^T (from Q slot preq, into sn) before the previous work's
   * epilogue and waited for it after.  The next work's Q slot must differ
   * from this work's, so QS > 1. */
  constexpr bool kPre = C::PRE && PERSIST && QS > 1;
  bool pre = false;
  int preq = 0;
  float sn[1][NB8][4];
  if constexpr (kPre) {
#pragma unroll
    for (int n = 0; n < NB8; ++n) sn[0][n][0] = sn[0][n][1] = sn[0][n][2] = sn[0][n][3] = 0.f;
  }
  while (w < nwork) {
    const bsa__gpu_item it = itn;
    const int wc = w;
    w = work_of(++r);
    if (w < nwork) itn = a.items[w / a.grid_y];
    int prow0, nprows;
    const int ntiles = slice(wc, it, prow0, nprows);
    if (nprows <= 0) continue;
    int q = 0;
    prof.stamp(PROF_ITEM, r - 1, ntiles);
    if (pre) {
      q = preq; /* waited for before the previous epilogue */
    } else if (ntiles > 0) {
      q = qord % QS;
      mbar_wait(qfull(q), (qord / QS) & 1);
      ++qord;
    }
    const bool active = wg * 64 < nprows;
    int toklim[1][2];
    float o[1][ND8][4], so[1][NB8][4], m[1][2], l[1][2];
    /* With kPre the scores live across works (a Q K^T may be in them). */
    float(&s)[1][NB8][4] = kPre ? sn : so;
    start_item<ND8, NB8, !kPre>(toklim, m, l, o[0], s[0], a, it, prow0, wrow0, lane);
    const uint32_t sQwg = sQ0 + q * C::Q_BYTES + wg * 64 * 128;

    /* A tile's mask flag (any loader warp's), and the rest of tile t once
     * its S is in s: softmax and P V from the stage's V. */
    auto tile_need = [&](int stage) {
      const int4 fl = *reinterpret_cast<const int4 *>(flags + 4 * stage);
      return (fl.x | fl.y | fl.z | fl.w) != 0;
    };
    auto finish_tile = [&](int stage, bool need, int t) {
      softmax_pv<D, BN, T>(s, o, m, l, a, it, colinfo + stage * BN * 2, toklim, prow0, wrow0,
                           lane, need, sKV + stage * 2 * C::TILE + C::TILE, prof, r - 1, t);
    };
    auto release = [&](int stage) {
      __syncwarp();
      if (lane == 0) mbar_arrive(empty(stage));
    };
    int t0 = 0;
    if (pre) {
      /* Tile 0's S is in s already (issued before the previous work's
       * epilogue, waited after it); this warpgroup is active. */
      const int stage = cn % ST;
      ++cn;
      finish_tile(stage, tile_need(stage), 0);
      release(stage);
      t0 = 1;
    }
    for (int t = t0; t < ntiles; ++t) {
      const int stage = cn % ST;
      prof.stamp(PROF_WAIT, r - 1, t);
      mbar_wait(full(stage), (cn / ST) & 1);
      prof.stamp(PROF_BAR, r - 1, t);
      ++cn;
      /* cp.async wrote the tile through the generic proxy; wgmma reads it
       * through the async proxy. */
      fence_proxy_async();
      if (active) {
        const bool need = tile_need(stage);
        qk_issue<D, BN, BM, T>(s[0], sQwg, sKV + stage * 2 * C::TILE);
        wg_wait<0>();
        fence_regs<NB8>(s[0]);
        prof.stamp(PROF_QK, r - 1, t);
        finish_tile(stage, need, t);
        prof.stamp(PROF_PV, r - 1, t);
      }
      release(stage);
    }
    auto epi = [&]() {
      if (active) {
        const uint32_t slot = sQ0 + q * C::Q_BYTES;
        if (a.tma_o && it.part < 0 && ntiles > 0 && prow0 + wg * 64 + 64 <= nprows) {
          /* The warpgroup's 64 rows are all in the item: its warps stage them
           * in the Q slot and one thread stores the slice by TMA (shared
           * memory written by the generic proxy, read by the async one). */
          stage_o<ND8, BM>(o, m, l, a, it, prow0, wrow0, nprows, lane, slot);
          fence_proxy_async();
          asm volatile("bar.sync %0, 128;\n" ::"r"(1 + wg) : "memory");
          if ((tid & 127) == 0) {
            const int pr = prow0 + wg * 64;
            const int tok0 = it.q_begin + pr / a.group;
            const bool nhd = a.o_sh < a.o_st;
            tma_store_o<D, BM>(&tmo, slot + wg * 64 * 128, nhd ? it.kv_head * a.group : tok0,
                               nhd ? tok0 : it.kv_head);
          }
        } else if (it.part < 0 && ntiles > 0 && ((uintptr_t)a.o & 15) == 0) {
          epilogue_smem<ND8, BM>(o, m, l, a, it, prow0, wrow0, nprows, lane, slot);
        } else {
          epilogue<1, ND8, BM>(o, m, l, a, it, wc % a.grid_y, prow0, wrow0, nprows, lane);
        }
      }
    };
    /* kPre: the next work's first Q K^T, issued here so that the tensor
     * cores compute it during this work's epilogue (its accumulators are
     * s, the epilogue's o).  Issue and wait bracket the epilogue in one
     * block, so s is never in flight across the loop's branches (ptxas
     * would serialise every wgmma of the kernel, warning C7518). */
    pre = false;
    bool dopre = false;
    uint32_t pQ = 0, pK = 0;
    if (kPre && w < nwork) {
      int p0n, nprn;
      const int ntn = slice(w, itn, p0n, nprn);
      if (ntn > 0 && wg * 64 < nprn) {
        preq = qord % QS;
        mbar_wait(qfull(preq), (qord / QS) & 1);
        ++qord;
        const int stage = cn % ST;
        mbar_wait(full(stage), (cn / ST) & 1);
        pQ = sQ0 + preq * C::Q_BYTES + wg * 64 * 128;
        pK = sKV + stage * 2 * C::TILE;
        dopre = true;
      }
    }
    if (dopre) {
      fence_proxy_async();
      qk_issue<D, BN, BM, T>(s[0], pQ, pK);
      epi();
      wg_wait<0>();
      fence_regs<NB8>(s[0]);
      pre = true;
    } else {
      epi();
    }
    prof.stamp(PROF_EPI, r - 1, ntiles);
    if (ntiles > 0) {
      __syncwarp();
      if (lane == 0) mbar_arrive(qempty(q));
    }
  }
  /* O's TMA stores complete before the CTA ends. */
  if ((tid & 127) == 0) asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
  prof.finish();
#else
  __trap(); /* only built for sm_90a; the host never selects it elsewhere */
#endif
}

template <class C, typename T> struct LaunchSm90 {
  template <bool P> static constexpr auto kernel() {
    if constexpr (C::WS)
      return attn_fwd_ws<C, T, P>;
    else
      return attn_fwd_sm90<C, T, P>;
  }
  static int prepare(int *smem) {
    cudaFuncAttributes fa;
    cudaError_t e = cudaFuncGetAttributes(&fa, kernel<false>());
    if (e != cudaSuccess) return (int)e;
    /* The sm_90a image is the only one with a body. */
    if (fa.binaryVersion != 90) return (int)cudaErrorNoKernelImageForDevice;
    e = cudaFuncSetAttribute(kernel<false>(), cudaFuncAttributeMaxDynamicSharedMemorySize,
                             C::smem(false));
    if (e != cudaSuccess) return (int)e;
    if constexpr (C::CAN_PERSIST)
      e = cudaFuncSetAttribute(kernel<true>(), cudaFuncAttributeMaxDynamicSharedMemorySize,
                               C::smem(true));
    if (smem) *smem = C::smem(C::CAN_PERSIST);
    return (int)e;
  }
  /* One launch of the kernel, persistent (P, grid = its CTAs) or not. */
  template <bool P>
  static int go(const bsa__attn_args *args, const bsa__tma_maps *maps, cudaStream_t st,
                unsigned grid) {
    if constexpr (C::WS) {
      /* The maps travel as __grid_constant__ parameters (the copies read
       * them from parameter space); unused, and zero, without TMA. */
      CUtensorMap mk, mv, mo;
      memset(&mk, 0, sizeof mk);
      memset(&mv, 0, sizeof mv);
      memset(&mo, 0, sizeof mo);
      if (args->tma && maps) {
        memcpy(&mk, maps->words, sizeof mk);
        memcpy(&mv, maps->words + 16, sizeof mv);
      }
      if (args->tma_o && maps) memcpy(&mo, maps->words + 32, sizeof mo);
      kernel<P>()<<<grid, C::NT, C::smem(P), st>>>(*args, mk, mv, mo);
    } else {
      kernel<P>()<<<grid, C::NT, C::smem(P), st>>>(*args);
    }
    return (int)cudaGetLastError();
  }
  static int launch(const bsa__attn_args *args, const bsa__tma_maps *maps, cudaStream_t st) {
    const int64_t nwork = (int64_t)args->num_items * args->grid_y;
    if constexpr (C::CAN_PERSIST) {
      if (args->persist && args->ctas < nwork)
        return go<true>(args, maps, st, (unsigned)args->ctas);
    }
    return go<false>(args, maps, st, (unsigned)nwork);
  }
  /* Keys per tile the kernel loads by TMA (bsa__kv_maps_encode), 0: none. */
  static constexpr int tma_rows() { return C::WS ? C::BN : 0; }
};

/* Both generations of one head dim: hopper selects the wgmma kernel. */
template <class C, class H> struct Dispatch {
  static int tma_rows(int hopper) { return hopper ? LaunchSm90<H, __half>::tma_rows() : 0; }
  static int prepare(int dtype, int hopper, int *smem) {
    if (hopper)
      return dtype == 2 ? LaunchSm90<H, __nv_bfloat16>::prepare(smem)
                        : LaunchSm90<H, __half>::prepare(smem);
    return dtype == 2 ? Launch<C, __nv_bfloat16>::prepare(smem)
                      : Launch<C, __half>::prepare(smem);
  }
  static int launch(int dtype, int hopper, const bsa__attn_args *args, const bsa__tma_maps *maps,
                    void *stream) {
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    if (hopper)
      return dtype == 2 ? LaunchSm90<H, __nv_bfloat16>::launch(args, maps, st)
                        : LaunchSm90<H, __half>::launch(args, maps, st);
    return dtype == 2 ? Launch<C, __nv_bfloat16>::launch(args, st)
                      : Launch<C, __half>::launch(args, st);
  }
};

} /* namespace bsak */

#endif /* BSA_ATTN_FWD_SM90_CUH */
