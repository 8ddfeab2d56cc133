// Merges the per-split partial results of decode_attention.cuh: each split's normalized output
// weighted by its softmax mass sum * 2^(max - global max). One CTA per (head, session); its
// warps take the splits in turn (warp w: splits w, w + warps, ...), lane j the dims j, j + 32,
// ..., so one split's partial is one warp's coalesced load and the loads of different splits
// are in flight together (one after another, the merge of 64 splits took ~8 us at batch 1).
#ifndef KVCC_CODEGEN_DECODE_MERGE_CUH_
#define KVCC_CODEGEN_DECODE_MERGE_CUH_

#include "decode_combine.cuh"
#include "kvcc_common.cuh"

namespace kvcc {

constexpr int kMergeWarps = kThreads / 32;
constexpr int kMergeDims = (kHeadDim + 31) / 32;  // dims per lane

__device__ __forceinline__ void decode_merge(
    const float* __restrict__ partial_out,  // [batch, heads, splits, head_dim]
    const float* __restrict__ partial_ml,   // [batch, heads, splits, 2] (max in log2 units, sum)
    int splits, io_t* __restrict__ out) {   // [batch, heads, head_dim]
  __shared__ float sm_max[kMergeWarps], sm_wsum[kMergeWarps];
  __shared__ float sm_acc[kMergeWarps][kMergeDims * 32];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const i64 row = (i64)blockIdx.y * kHeads + blockIdx.x;
  const float* ml = partial_ml + row * splits * 2;
  grid_dependency_wait();  // the decode kernel's partials (launched before it finished)
  // The global max over the splits that hold tokens, from every thread's share of them.
  float mx = -1e30f;
  for (int s = tid; s < splits; s += kThreads) {
    if (ml[2 * s + 1] > 0.f) mx = fmaxf(mx, ml[2 * s]);
  }
#pragma unroll
  for (int x = 16; x > 0; x /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, x));
  if (lane == 0) sm_max[warp] = mx;
  __syncthreads();
#pragma unroll
  for (int w = 0; w < kMergeWarps; ++w) mx = fmaxf(mx, sm_max[w]);
  // This warp's splits; a split without tokens is passed over by a select (so the loads of
  // consecutive splits need not wait for each other), never read into the sum.
  float acc[kMergeDims], wsum = 0.f;
#pragma unroll
  for (int k = 0; k < kMergeDims; ++k) acc[k] = 0.f;
#pragma unroll 4
  for (int s = warp; s < splits; s += kMergeWarps) {
    const float l = ml[2 * s + 1];
    const bool used = l > 0.f;
    const float w = used ? l * exp2f(ml[2 * s] - mx) : 0.f;
    wsum += w;
    const float* po = partial_out + (row * splits + s) * kHeadDim;
#pragma unroll
    for (int k = 0; k < kMergeDims; ++k) {
      const int d = lane + 32 * k;
      if (d < kHeadDim) {
        const float v = po[d];
        acc[k] = used ? fmaf(w, v, acc[k]) : acc[k];
      }
    }
  }
#pragma unroll
  for (int k = 0; k < kMergeDims; ++k) sm_acc[warp][lane + 32 * k] = acc[k];
  if (lane == 0) sm_wsum[warp] = wsum;  // the same in every lane
  __syncthreads();
  for (int d = tid; d < kHeadDim; d += kThreads) {
    float a = 0.f, ws = 0.f;
#pragma unroll
    for (int w = 0; w < kMergeWarps; ++w) {
      a += sm_acc[w][d];
      ws += sm_wsum[w];
    }
    store_io(out + row * kHeadDim + d, ws > 0.f ? a / ws : 0.f);
  }
}

}  // namespace kvcc

extern "C" __global__ void __launch_bounds__(kvcc_spec::kThreads, kvcc_spec::kMinBlocks)
    kvcc_decode_merge(const kvcc::kernels::DecodeMergeParams p) {
  kvcc::decode_merge(p.partial_out, p.partial_ml, p.splits, static_cast<kvcc::io_t*>(p.out));
}

#endif  // KVCC_CODEGEN_DECODE_MERGE_CUH_
