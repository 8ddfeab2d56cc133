// Merges the per-split partial results of decode_attention.cuh: each split's normalized output
// weighted by its softmax mass sum * 2^(max - global max). One CTA per (head, session).
#ifndef KVCC_CODEGEN_DECODE_MERGE_CUH_
#define KVCC_CODEGEN_DECODE_MERGE_CUH_

#include "decode_combine.cuh"
#include "kvcc_common.cuh"

namespace kvcc {

__device__ __forceinline__ void decode_merge(
    const float* __restrict__ partial_out,  // [batch, heads, splits, head_dim]
    const float* __restrict__ partial_ml,   // [batch, heads, splits, 2] (max in log2 units, sum)
    int splits, io_t* __restrict__ out) {   // [batch, heads, head_dim]
  wait_for_primary();  // the decode kernel's partials (launched before it finished)
  const i64 row = (i64)blockIdx.y * kHeads + blockIdx.x;
  const float* ml = partial_ml + row * splits * 2;
  float mx = -1e30f;
  for (int s = 0; s < splits; ++s) {
    if (ml[2 * s + 1] > 0.f) mx = fmaxf(mx, ml[2 * s]);
  }
  for (int d = threadIdx.x; d < kHeadDim; d += kThreads) {
    float wsum = 0.f, a = 0.f;
    for (int s = 0; s < splits; ++s) {
      const float l = ml[2 * s + 1];
      if (!(l > 0.f)) continue;
      const float w = l * exp2f(ml[2 * s] - mx);
      wsum += w;
      a = fmaf(w, partial_out[(row * splits + s) * kHeadDim + d], a);
    }
    store_io(out + row * kHeadDim + d, wsum > 0.f ? a / wsum : 0.f);
  }
}

}  // namespace kvcc

extern "C" __global__ void __launch_bounds__(kvcc_spec::kThreads, kvcc_spec::kMinBlocks)
    kvcc_decode_merge(const kvcc::kernels::DecodeMergeParams p) {
  kvcc::decode_merge(p.partial_out, p.partial_ml, p.splits, static_cast<kvcc::io_t*>(p.out));
}

#endif  // KVCC_CODEGEN_DECODE_MERGE_CUH_
