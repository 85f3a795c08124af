/*
 * kernels/attn_d64.cu - the attention kernel for head_dim 64 (f16 and bf16).
 * Configuration: 32 rows per warp, Q fragments held in registers (32 regs), 3 stages of 16 KB.
 * See attn_fwd.cuh for the algorithm.
 */
#include "kernels/attn_fwd.cuh"

namespace {
#ifndef BSA_CFG_D64 /* development override, see docs/kernels.md */
#define BSA_CFG_D64 64, 2, 4, 64, 3, true, 2
#endif
typedef bsak::Cfg<BSA_CFG_D64> C64;
}

extern "C" int bsa__attn_prepare_d64(int dtype, int *smem) {
  return dtype == 2 ? bsak::Launch<C64, __nv_bfloat16>::prepare(smem)
                    : bsak::Launch<C64, __half>::prepare(smem);
}

extern "C" int bsa__attn_launch_d64(int dtype, const bsa__attn_args *args, void *stream) {
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  return dtype == 2 ? bsak::Launch<C64, __nv_bfloat16>::launch(args, st)
                    : bsak::Launch<C64, __half>::launch(args, st);
}
