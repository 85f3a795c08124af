/*
 * kernels/attn_d256.cu - the attention kernels for head_dim 256 (f16 and bf16).
 * mma.sync (attn_fwd.cuh): 8 warps of 16 rows (O alone is 128 registers), 2 stages of 32 KB.
 * wgmma, sm_90a (attn_fwd_sm90.cuh): 64 keys per tile, 2 stages (194 KB; never persistent: two Q slots would not fit).
 */
#include "kernels/attn_fwd_sm90.cuh"

namespace {
/* Development overrides, see docs/kernels.md. */
#ifndef BSA_CFG_D256
#define BSA_CFG_D256 256, 1, 8, 32, 2, false, 1
#endif
#ifndef BSA_HCFG_D256
#define BSA_HCFG_D256 256, 64, 2
#endif
typedef bsak::Dispatch<bsak::Cfg<BSA_CFG_D256>, bsak::HCfg<BSA_HCFG_D256> > K;
} // namespace

extern "C" int bsa__attn_prepare_d256(int dtype, int hopper, int *smem) {
  return K::prepare(dtype, hopper, smem);
}

extern "C" int bsa__attn_launch_d256(int dtype, int hopper, const bsa__attn_args *args,
                                     const bsa__tma_maps *maps, void *stream) {
  return K::launch(dtype, hopper, args, maps, stream);
}

extern "C" int bsa__attn_tma_rows_d256(int hopper) { return K::tma_rows(hopper); }
