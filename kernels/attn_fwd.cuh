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

#include "kernels/attn_common.cuh"

/* Development switches, measured in docs/kernels.md (defaults = chosen). */
#ifndef BSA_MMA_VOLATILE
#define BSA_MMA_VOLATILE 1
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
};

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

/* Byte offset of 16-byte chunk c of row r in a [rows][D] tile: chunks are
 * XOR-swizzled by the row's low three bits so that the 8 rows an ldmatrix
 * phase reads fall in 8 different bank groups. */
template <int D> __device__ __forceinline__ uint32_t swz(int r, int c) {
  return (uint32_t)(r * (D * 2) + ((c ^ (r & 7)) << 4));
}

template <class C, typename T>
__global__ void __launch_bounds__(C::NT, C::MINB) attn_fwd(const bsa__attn_args a) {
  constexpr int D = C::D, WM = C::WM, BN = C::BN, ST = C::ST, NT = C::NT;
  constexpr int BM = C::BM;
  constexpr int NB8 = BN / 8, ND8 = D / 8;
  extern __shared__ __align__(128) unsigned char smem[];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const bsa__gpu_item it = a.items[blockIdx.x];
  const int prow0 = blockIdx.y * BM;
  const int nprows = it.rows * a.group - prow0; /* valid packed rows here */
  if (nprows <= 0) return;

  const uint32_t sQ = smem_u32(smem);
  const uint32_t sKV = sQ + C::Q_BYTES;
  /* Per stage and tile column: {key token or -1, mask offset or -1}. */
  int *colinfo = reinterpret_cast<int *>(smem + C::Q_BYTES + ST * 2 * C::TILE);
  auto off = [](int r, int c) { return swz<D>(r, c); };

  load_q<BM, D, NT, T>(a, it, prow0, nprows, tid,
                       [&](int r, int c) { return sQ + swz<D>(r, c); });
  cp_async_commit();

  SegCursor cur;
  cur.init(a, it);
  const int64_t kv_head_off = (int64_t)it.kv_head * a.k_sh;
  const int nkeys = it.nkeys;
  const int ntiles = (nkeys + BN - 1) / BN;
  auto issue = [&](int t) -> int {
    const int stage = t % ST;
    const uint32_t sK = sKV + stage * 2 * C::TILE;
    return issue_kv<BN, D, NT, T>(a, cur, nkeys, t, sK, sK + C::TILE, colinfo + stage * BN * 2,
                                  kv_head_off, tid, off);
  };

  int fbits = 0;
#pragma unroll
  for (int t = 0; t < ST - 1; ++t) {
    if (t < ntiles) fbits |= issue(t) << t;
    cp_async_commit();
  }

  const int wrow0 = warp * 16 * WM;
  const bool active = wrow0 < nprows;
  int toklim[WM][2];
  row_limits<WM>(toklim, a, it, prow0, wrow0, lane);

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

    const float sc = transform_scores<WM, NB8>(s, a, it, colinfo + stage * BN * 2, toklim, prow0,
                                               wrow0, lane, need != 0);
    online_softmax<WM, NB8, ND8>(s, o, m, l, sc);

    /* O += P V. */
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      uint32_t pa[WM][4];
#pragma unroll
      for (int mt = 0; mt < WM; ++mt) p_fragment<T, NB8>(pa[mt], s[mt], kk);
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
  epilogue<WM, ND8, BM>(o, m, l, a, it, blockIdx.y, prow0, wrow0, nprows, lane);
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
