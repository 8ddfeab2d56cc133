// Causal prefill attention over the paged KV cache: the new tokens of each session (already
// written to the cache) attend to every cached token at positions <= their own. One CTA per
// (query tile, query head, session): the tile's queries stay in shared memory while the cache
// is staged kKvTile tokens at a time, dequantized to fp32 on the way in; online softmax per row.
// Plain fp32 arithmetic, no tensor cores: correct for every shape, not tuned.
#ifndef KVCC_CODEGEN_PREFILL_ATTENTION_CUH_
#define KVCC_CODEGEN_PREFILL_ATTENTION_CUH_

#include "kvcc_common.cuh"

namespace kvcc {
constexpr int kAccPer = (kQTile * kHeadDim + kThreads - 1) / kThreads;

// Element d of cache row (block, head, slot) of part P, dequantized.
template <typename P>
__device__ __forceinline__ float cache_element(const u8* cache, const u16* params,
                                               const float* zps, const float* scales, int block,
                                               int head, int slot, int d) {
  const u8* row = cache + P::row_offset(block, head, slot);
  float x = 0.f;
  if constexpr (P::kBits == 16) {
    return half_to_float(reinterpret_cast<const u16*>(row)[d]);
  } else if constexpr (P::kFp8) {
    x = fp8_e4m3_to_float(row[d]);
  } else if constexpr (P::kBits == 8) {
    x = P::kSigned ? (float)(signed char)row[d] : (float)row[d];
  } else {
    const int nib = (row[d / 2] >> (4 * (d % 2))) & 0xF;
    x = P::kSigned ? (float)(nib >= 8 ? nib - 16 : nib) : (float)nib;
  }
  float zp, scale;
  if constexpr (P::kOnline) {
    const i64 pi = param_index(block, head, slot);
    scale = half_to_float(params[pi]);
    zp = half_to_float(params[pi + 1]);
  } else {
    zp = zps[P::param(head, d)];
    scale = scales[P::param(head, d)];
  }
  return fmaf(x, scale, zp);
}

// The kernel's body over any cache layout: load_kv(block, kv head, slot, d, k, v) sets element
// d of the cached K and V rows (the int4-kivi kernels of kivi_cache.cuh share it).
template <typename LoadKV>
__device__ __forceinline__ void prefill_attention_tiles(
    const io_t* __restrict__ q,  // [tokens, heads, head_dim], sessions back to back
    const int* __restrict__ block_tables, int max_blocks,  // [batch, max_blocks]
    const int* __restrict__ seq_lens,  // [batch] cached tokens, the new ones included
    const int* __restrict__ q_start,   // [batch + 1] first query token of each session
    float softmax_scale,
    io_t* __restrict__ out,            // [tokens, heads, head_dim]
    LoadKV load_kv) {
  const int tile0 = blockIdx.x * kQTile, h = blockIdx.y, b = blockIdx.z;
  const int kvh = h / kGroup;
  const int q0 = q_start[b], qlen = q_start[b + 1] - q0;
  if (tile0 >= qlen) return;
  const int seq_len = seq_lens[b];
  const int first_pos = seq_len - qlen;  // position of the session's first new token
  const int rows = min(kQTile, qlen - tile0);
  const int* table = block_tables + (i64)b * max_blocks;
  const int tid = threadIdx.x;

  __shared__ float sq[kQTile][kHeadDim];
  __shared__ float sk[kKvTile][kHeadDim + 1];
  __shared__ float sv[kKvTile][kHeadDim + 1];
  __shared__ float sp[kQTile][kKvTile + 1];
  __shared__ float sm[kQTile], sl[kQTile], scorr[kQTile];

  const float qscale = softmax_scale * kLog2e;
  for (int idx = tid; idx < kQTile * kHeadDim; idx += kThreads) {
    const int r = idx / kHeadDim, d = idx % kHeadDim;
    sq[r][d] = r < rows ? load_io(q + ((i64)(q0 + tile0 + r) * kHeads + h) * kHeadDim + d) * qscale
                        : 0.f;
  }
  if (tid < kQTile) {
    sm[tid] = -1e30f;
    sl[tid] = 0.f;
  }
  float acc[kAccPer];
#pragma unroll
  for (int i = 0; i < kAccPer; ++i) acc[i] = 0.f;

  const int kv_end = min(seq_len, first_pos + tile0 + rows);
  for (int kv0 = 0; kv0 < kv_end; kv0 += kKvTile) {
    __syncthreads();
    for (int idx = tid; idx < kKvTile * kHeadDim; idx += kThreads) {
      const int j = idx / kHeadDim, d = idx % kHeadDim, t = kv0 + j;
      float kx = 0.f, vx = 0.f;
      if (t < kv_end) load_kv(table[t / kBlockSize], kvh, t % kBlockSize, d, kx, vx);
      sk[j][d] = kx;
      sv[j][d] = vx;
    }
    __syncthreads();
    for (int idx = tid; idx < kQTile * kKvTile; idx += kThreads) {
      const int r = idx / kKvTile, j = idx % kKvTile, t = kv0 + j;
      float s = __int_as_float(0xff800000);
      if (r < rows && t <= first_pos + tile0 + r && t < kv_end) {
        s = 0.f;
#pragma unroll 8
        for (int d = 0; d < kHeadDim; ++d) s = fmaf(sq[r][d], sk[j][d], s);
      }
      sp[r][j] = s;
    }
    __syncthreads();
    if (tid < kQTile) {
      const int r = tid;
      float mx = sm[r];
      for (int j = 0; j < kKvTile; ++j) mx = fmaxf(mx, sp[r][j]);
      const float corr = exp2f(sm[r] - mx);
      float lsum = 0.f;
      for (int j = 0; j < kKvTile; ++j) {
        const float p = exp2f(sp[r][j] - mx);
        sp[r][j] = p;
        lsum += p;
      }
      sl[r] = fmaf(sl[r], corr, lsum);
      sm[r] = mx;
      scorr[r] = corr;
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kAccPer; ++i) {
      const int idx = tid + i * kThreads;
      if (idx < kQTile * kHeadDim) {
        const int r = idx / kHeadDim, d = idx % kHeadDim;
        float a = acc[i] * scorr[r];
        for (int j = 0; j < kKvTile; ++j) a = fmaf(sp[r][j], sv[j][d], a);
        acc[i] = a;
      }
    }
  }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < kAccPer; ++i) {
    const int idx = tid + i * kThreads;
    if (idx < kQTile * kHeadDim) {
      const int r = idx / kHeadDim, d = idx % kHeadDim;
      if (r < rows) {
        const float o = sl[r] > 0.f ? acc[i] / sl[r] : 0.f;
        store_io(out + ((i64)(q0 + tile0 + r) * kHeads + h) * kHeadDim + d, o);
      }
    }
  }
}

// The kernel's body, with restrict-qualified pointers (the parameter struct cannot carry them).
__device__ __forceinline__ void prefill_attention(
    const io_t* __restrict__ q,  // [tokens, heads, head_dim], sessions back to back
    const u8* __restrict__ k_cache, const u8* __restrict__ v_cache,
    const u16* __restrict__ k_params, const u16* __restrict__ v_params,
    const float* __restrict__ k_zp, const float* __restrict__ k_scale,
    const float* __restrict__ v_zp, const float* __restrict__ v_scale,
    const int* __restrict__ block_tables, int max_blocks,  // [batch, max_blocks]
    const int* __restrict__ seq_lens,  // [batch] cached tokens, the new ones included
    const int* __restrict__ q_start,   // [batch + 1] first query token of each session
    float softmax_scale,
    io_t* __restrict__ out) {          // [tokens, heads, head_dim]
  prefill_attention_tiles(q, block_tables, max_blocks, seq_lens, q_start, softmax_scale, out,
                          [&](int blk, int kvh, int slot, int d, float& kx, float& vx) {
                            kx = cache_element<KPart>(k_cache, k_params, k_zp, k_scale, blk, kvh,
                                                      slot, d);
                            vx = cache_element<VPart>(v_cache, v_params, v_zp, v_scale, blk, kvh,
                                                      slot, d);
                          });
}
}  // namespace kvcc

extern "C" __global__ void __launch_bounds__(kvcc_spec::kThreads, kvcc_spec::kMinBlocks)
    kvcc_prefill_attention(const kvcc::kernels::PrefillAttentionParams p) {
  kvcc::prefill_attention(static_cast<const kvcc::io_t*>(p.q), p.cache.k, p.cache.v,
                          p.cache.k_params, p.cache.v_params, p.cache.k_zp, p.cache.k_scale,
                          p.cache.v_zp, p.cache.v_scale, p.block_tables, p.max_blocks,
                          p.seq_lens, p.q_start, p.softmax_scale,
                          static_cast<kvcc::io_t*>(p.out));
}

#endif  // KVCC_CODEGEN_PREFILL_ATTENTION_CUH_
