// The last step of both decode kernels (decode_attention.cuh, decode_attention_tc.cuh): each
// warp's softmax partials (max, sum, unnormalized output) in shared memory combined into the
// CTA's output, or into its split's normalized partial and (max, sum) for decode_merge.cuh;
// and the programmatic-launch handshake between the decode kernels and that merge.
#ifndef KVCC_CODEGEN_DECODE_COMBINE_CUH_
#define KVCC_CODEGEN_DECODE_COMBINE_CUH_

#include "grid_dependency.cuh"
#include "kvcc_common.cuh"

namespace kvcc {

// Programmatic dependent launch (sm_90+): the merge, launched with the programmatic stream
// serialization attribute, may start once every decode CTA has called allow_dependents (at
// its start: the merge's launch and scheduling overlap the decode instead of following it),
// and grid_dependency_wait holds it until the decode grid has finished and its writes are
// visible.
using kvcc_grid::allow_dependents;
using kvcc_grid::grid_dependency_wait;

// sm_acc: [WARPS][kGroup][kHeadDim]; sm_m, sm_l: [WARPS][kGroup]. v_affine(d, a, lsum) applies
// the V part's calibrated scale and zero to the combined sum a of dim d. Call after a barrier.
template <int WARPS, typename VAffine>
__device__ __forceinline__ void combine_warps_and_store(
    const float* sm_acc, const float* sm_m, const float* sm_l, VAffine v_affine, int kvh, int b,
    int split, int nsplit, io_t* __restrict__ out, float* __restrict__ partial_out,
    float* __restrict__ partial_ml) {
  for (int idx = threadIdx.x; idx < kGroup * kHeadDim; idx += kThreads) {
    const int g = idx / kHeadDim, d = idx % kHeadDim;
    float mx = -1e30f;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) mx = fmaxf(mx, sm_m[w * kGroup + g]);
    float lsum = 0.f, a = 0.f;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) {
      const float f = exp2f(sm_m[w * kGroup + g] - mx);
      lsum = fmaf(sm_l[w * kGroup + g], f, lsum);
      a = fmaf(sm_acc[(w * kGroup + g) * kHeadDim + d], f, a);
    }
    a = v_affine(d, a, lsum);
    const float o = lsum > 0.f ? a / lsum : 0.f;
    const i64 row = (i64)b * kHeads + kvh * kGroup + g;
    if (nsplit == 1) {
      store_io(out + row * kHeadDim + d, o);
    } else {
      partial_out[(row * nsplit + split) * kHeadDim + d] = o;
      if (d == 0) {
        partial_ml[(row * nsplit + split) * 2] = mx;
        partial_ml[(row * nsplit + split) * 2 + 1] = lsum;
      }
    }
  }
}

}  // namespace kvcc

#endif  // KVCC_CODEGEN_DECODE_COMBINE_CUH_
