/*
 * kernels/attn_d256.cu - the attention kernel for head_dim 256 (f16 and bf16).
 * Configuration: 8 warps of 16 rows (O alone is 128 registers), 2 stages of 32 KB.
 * See attn_fwd.cuh for the algorithm.
 */
#include "kernels/attn_fwd.cuh"

namespace {
#ifndef BSA_CFG_D256 /* development override, see docs/kernels.md */
#define BSA_CFG_D256 256, 1, 8, 32, 2, false, 1
#endif
typedef bsak::Cfg<BSA_CFG_D256> C256;
}

extern "C" int bsa__attn_prepare_d256(int dtype, int *smem) {
  return dtype == 2 ? bsak::Launch<C256, __nv_bfloat16>::prepare(smem)
                    : bsak::Launch<C256, __half>::prepare(smem);
}

extern "C" int bsa__attn_launch_d256(int dtype, const bsa__attn_args *args, void *stream) {
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  return dtype == 2 ? bsak::Launch<C256, __nv_bfloat16>::launch(args, st)
                    : bsak::Launch<C256, __half>::launch(args, st);
}
