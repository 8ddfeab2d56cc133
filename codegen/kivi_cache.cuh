// The int4-kivi cache on the GPU (ir/kv_cache_scheme.h block_channel K, V i4 online): the
// cache write (K rows in f16 into their block's staging block, V quantized per token), the seal
// of a filled block (its K quantized per channel over the block's tokens, the formulas of
// runtime/kv_row_codec.cc EncodeKvBlockChannel, so the bytes equal the CPU backend's), the
// reopen of a quantized block a session rolls back into, and causal attention reading K from
// staging or from the quantized block by the staging map. The attention is the scalar prefill
// kernel's (prefill_attention.cuh prefill_attention_tiles: a query tile in shared memory, the
// cache staged a tile of tokens at a time, dequantized to fp32, online softmax) with the kivi
// element loads, and serves any entry (a decode token is an entry of one query): correct for
// every shape, not tuned.
// The specialization describes V as KVCC_CACHE_BITS 4 / KVCC_SCHEME 3 (i4 online, both parts:
// K's i4 rows have the same offsets, its parameters are read per block here).
#ifndef KVCC_CODEGEN_KIVI_CACHE_CUH_
#define KVCC_CODEGEN_KIVI_CACHE_CUH_

// Standalone (nvcc -c, the editor): the i4 online storage the program always has.
#ifndef KVCC_CACHE_BITS
#define KVCC_CACHE_BITS 4
#endif
#ifndef KVCC_SCHEME
#define KVCC_SCHEME 3
#endif

#include "kivi_params.h"
#include "prefill_attention.cuh"
#include "rotary_cache_write.cuh"

namespace kvcc {
typedef CachePart<4, 3, false> KiviRows;  // i4 rows of K and V, online V parameters
static_assert(VPart::kOnline && VPart::kBits == 4, "int4-kivi stores V int4 online");

__device__ __forceinline__ i64 staging_index(int staging, int head, int slot) {
  return (((i64)staging * kKvHeads + head) * kBlockSize + slot) * kHeadDim;
}
__device__ __forceinline__ i64 channel_param_index(int block, int head) {
  return ((i64)block * kKvHeads + head) * kHeadDim * 2;
}
// Stored nibble of element d of a packed i4 row.
__device__ __forceinline__ int nibble(const u8* row, int d) {
  return (row[d / 2] >> (4 * (d % 2))) & 0xF;
}
// q * scale + zero rounded twice, as ir/kv_quant.h Dequantize computes it on the host (no FMA).
__device__ __forceinline__ float dequantize(int q, float zero, float scale) {
  return __fadd_rn(__fmul_rn((float)q, scale), zero);
}

// Element d of K of (block, head, slot): from staging while the block has a staging block.
__device__ __forceinline__ float kivi_k(const kernels::KiviCacheView& c, int block, int head,
                                        int slot, int d) {
  const int staging = c.staging_map[block];
  if (staging >= 0) return half_to_float(c.staging[staging_index(staging, head, slot) + d]);
  const u16* pp = c.k_params + channel_param_index(block, head) + 2 * d;
  return dequantize(nibble(c.k + KiviRows::row_offset(block, head, slot), d),
                    half_to_float(pp[1]), half_to_float(pp[0]));
}
__device__ __forceinline__ float kivi_v(const kernels::KiviCacheView& c, int block, int head,
                                        int slot, int d) {
  const i64 pi = param_index(block, head, slot);
  return dequantize(nibble(c.v + KiviRows::row_offset(block, head, slot), d),
                    half_to_float(c.v_params[pi + 1]), half_to_float(c.v_params[pi]));
}
}  // namespace kvcc

// Grid (count, ceil(2 kv_heads / warps)), one warp per row: K heads, then V heads.
extern "C" __global__ void __launch_bounds__(kvcc_spec::kThreads)
    kvcc_kivi_write(const kvcc::kernels::KiviWriteParams p) {
  using namespace kvcc;
  __shared__ float srow[kWarps][kHeadDim];
  const int t = p.first + blockIdx.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int r = blockIdx.y * kWarps + warp;
  if (blockIdx.x >= p.count || r >= 2 * kKvHeads) return;
  const int slot_id = p.slots[t];
  if (slot_id < 0) return;
  const int blk = slot_id / kBlockSize, slot = slot_id % kBlockSize;
  if (r < kKvHeads) {
    const int staging = p.staging[t];
    if (r == 0 && lane == 0) p.cache.staging_map[blk] = staging;
    const io_t* src = static_cast<const io_t*>(p.k) + (i64)t * p.k_stride + r * kHeadDim;
    u16* dst = p.cache.staging + staging_index(staging, r, slot);
    for (int d = lane; d < kHeadDim; d += 32) dst[d] = float_to_half(load_io(src + d));
    return;
  }
  const int head = r - kKvHeads;
  const io_t* src = static_cast<const io_t*>(p.v) + (i64)t * p.v_stride + head * kHeadDim;
  float* row = srow[warp];
  for (int d = lane; d < kHeadDim; d += 32) row[d] = load_io(src + d);
  __syncwarp();
  store_row<VPart>(row, p.cache.v, p.cache.v_params, nullptr, nullptr, blk, head, slot, lane);
}

// Grid (kv_heads), one thread per channel (blockDim: head_dim rounded up to a warp). The
// (scale, zero) pair of each channel: ir/kv_quant.h OnlineParams over the block's f16 rows.
extern "C" __global__ void kvcc_kivi_seal(const kvcc::kernels::KiviBlockParams p) {
  using namespace kvcc;
  const int h = blockIdx.x, d = threadIdx.x;
  const bool active = d < kHeadDim;
  const u16* src = p.cache.staging + staging_index(p.staging, h, 0);
  float lo = 0.f, hi = 0.f;
  if (active) {
    lo = hi = half_to_float(src[d]);
    for (int r = 1; r < kBlockSize; ++r) {
      const float x = half_to_float(src[(i64)r * kHeadDim + d]);
      lo = fminf(lo, x);
      hi = fmaxf(hi, x);
    }
  }
  u16 scale_h = float_to_half(fminf((hi - lo) / 15.f, 65504.f));
  if (!(half_to_float(scale_h) > 0.f)) scale_h = 1;
  const u16 zero_h = float_to_half(fminf(fmaxf(lo, -65504.f), 65504.f));
  const float scale = half_to_float(scale_h), zero = half_to_float(zero_h);
  if (active) {
    u16* pp = p.cache.k_params + channel_param_index(p.block, h) + 2 * d;
    pp[0] = scale_h;
    pp[1] = zero_h;
  }
  for (int r = 0; r < kBlockSize; ++r) {
    int q = 0;
    if (active) {
      const float qv = rintf((half_to_float(src[(i64)r * kHeadDim + d]) - zero) / scale);
      q = (int)fminf(fmaxf(qv, 0.f), 15.f);
    }
    // Channels 2j and 2j + 1 share a byte (2j in the low nibble) and a warp.
    const int hi_q = __shfl_down_sync(0xffffffffu, q, 1);
    if (active && d % 2 == 0) {
      p.cache.k[KiviRows::row_offset(p.block, h, r) + d / 2] = (u8)((q & 0xF) | ((hi_q & 0xF) << 4));
    }
  }
  if (h == 0 && d == 0) p.cache.staging_map[p.block] = -1;
}

// Grid (kv_heads), one thread per channel: rows [0, rows) of a quantized block back to staging
// as the f16 of the values attention read (kv_cache.cc WriteBlockChannelRows).
extern "C" __global__ void kvcc_kivi_reopen(const kvcc::kernels::KiviBlockParams p) {
  using namespace kvcc;
  const int h = blockIdx.x, d = threadIdx.x;
  if (d >= kHeadDim) return;
  const u16* pp = p.cache.k_params + channel_param_index(p.block, h) + 2 * d;
  const float scale = half_to_float(pp[0]), zero = half_to_float(pp[1]);
  u16* dst = p.cache.staging + staging_index(p.staging, h, 0);
  for (int r = 0; r < p.rows; ++r) {
    const int q = nibble(p.cache.k + KiviRows::row_offset(p.block, h, r), d);
    dst[(i64)r * kHeadDim + d] = float_to_half(dequantize(q, zero, scale));
  }
  if (h == 0 && d == 0) p.cache.staging_map[p.block] = p.staging;
}

// Grid (ceil(max entry queries / q_tile), heads, entries): prefill_attention.cuh's tiles over
// the kivi cache.
extern "C" __global__ void __launch_bounds__(kvcc_spec::kThreads)
    kvcc_kivi_attention(const kvcc::kernels::KiviAttentionParams p) {
  using namespace kvcc;
  prefill_attention_tiles(static_cast<const io_t*>(p.q), p.block_tables, p.max_blocks, p.seq_lens,
                          p.q_start, p.softmax_scale, static_cast<io_t*>(p.out),
                          [&](int blk, int kvh, int slot, int d, float& kx, float& vx) {
                            kx = kivi_k(p.cache, blk, kvh, slot, d);
                            vx = kivi_v(p.cache, blk, kvh, slot, d);
                          });
}

#endif  // KVCC_CODEGEN_KIVI_CACHE_CUH_
