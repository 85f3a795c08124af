/*
 * kernels/attn_d128.cu - the attention kernels for head_dim 128 (f16 and bf16).
 * mma.sync (attn_fwd.cuh): 32 rows per warp (K fragments reused over two m16 tiles), Q re-read from shared memory, 2 stages of 32 KB, two CTAs per SM.
 * wgmma, sm_90a (attn_fwd_sm90.cuh): 128 keys per tile, 2 stages (163 KB; 195 KB persistent).
 */
#include "kernels/attn_fwd_sm90.cuh"

namespace {
/* Development overrides, see docs/kernels.md. */
#ifndef BSA_CFG_D128
#define BSA_CFG_D128 128, 2, 4, 64, 2, false, 2
#endif
#ifndef BSA_HCFG_D128
#define BSA_HCFG_D128 128, 128, 2, true
#endif
typedef bsak::Dispatch<bsak::Cfg<BSA_CFG_D128>, bsak::HCfg<BSA_HCFG_D128> > K;
} // namespace

extern "C" int bsa__attn_prepare_d128(int dtype, int hopper, int *smem) {
  return K::prepare(dtype, hopper, smem);
}

extern "C" int bsa__attn_launch_d128(int dtype, int hopper, const bsa__attn_args *args,
                                     const bsa__tma_maps *maps, void *stream) {
  return K::launch(dtype, hopper, args, maps, stream);
}

extern "C" int bsa__attn_tma_rows_d128(int hopper) { return K::tma_rows(hopper); }
