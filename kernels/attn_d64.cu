/*
 * kernels/attn_d64.cu - the attention kernels for head_dim 64 (f16 and bf16).
 * mma.sync (attn_fwd.cuh): 32 rows per warp, Q fragments held in registers (32 regs), 3 stages of 16 KB.
 * wgmma, sm_90a (attn_fwd_sm90.cuh): warp-specialised (attn_fwd_ws), 128 keys per tile, 4 stages,
 * 2 Q slots when persistent (149 KB; 165 KB persistent), each work's first Q K^T issued before
 * the previous work's epilogue (HCfg's PRE), barriers before the Q slots (BARS_FIRST).
 */
#include "kernels/attn_fwd_sm90.cuh"

namespace {
/* Development overrides, see docs/kernels.md. */
#ifndef BSA_CFG_D64
#define BSA_CFG_D64 64, 2, 4, 64, 3, true, 2
#endif
#ifndef BSA_HCFG_D64
#define BSA_HCFG_D64 64, 128, 4, true, 2, true, true
#endif
typedef bsak::Dispatch<bsak::Cfg<BSA_CFG_D64>, bsak::HCfg<BSA_HCFG_D64> > K;
} // namespace

extern "C" int bsa__attn_prepare_d64(int dtype, int hopper, int *smem) {
  return K::prepare(dtype, hopper, smem);
}

extern "C" int bsa__attn_launch_d64(int dtype, int hopper, const bsa__attn_args *args,
                                    const bsa__tma_maps *maps, void *stream) {
  return K::launch(dtype, hopper, args, maps, stream);
}

extern "C" int bsa__attn_tma_rows_d64(int hopper) { return K::tma_rows(hopper); }
