/*
 * kernels/attn_d128.cu - the attention kernel for head_dim 128 (f16 and bf16).
 * Configuration: 32 rows per warp (K fragments reused over two m16 tiles), Q re-read from shared memory, 2 stages of 32 KB, two CTAs per SM.
 * See attn_fwd.cuh for the algorithm.
 */
#include "kernels/attn_fwd.cuh"

namespace {
#ifndef BSA_CFG_D128 /* development override, see docs/kernels.md */
#define BSA_CFG_D128 128, 2, 4, 64, 2, false, 2
#endif
typedef bsak::Cfg<BSA_CFG_D128> C128;
}

extern "C" int bsa__attn_prepare_d128(int dtype, int *smem) {
  return dtype == 2 ? bsak::Launch<C128, __nv_bfloat16>::prepare(smem)
                    : bsak::Launch<C128, __half>::prepare(smem);
}

extern "C" int bsa__attn_launch_d128(int dtype, const bsa__attn_args *args, void *stream) {
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  return dtype == 2 ? bsak::Launch<C128, __nv_bfloat16>::launch(args, st)
                    : bsak::Launch<C128, __half>::launch(args, st);
}
