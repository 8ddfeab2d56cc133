// Rotary embedding fused with the KV-cache write: for each new token, K rows are rotated
// (Hugging Face rotate-half: pairs (j, j + d/2), angle = position * inv_freq[j]) and V rows
// taken as they are, then both are stored in the paged cache in its dtype, quantized by the
// scheme of its part (ir/kv_quant.h, runtime/kv_row_codec.cc; online schemes compute each row's
// (scale, zero) here and store them as fp16 beside it; fp8 rounds as ir/fp8_e4m3.h). Q rows, when given, are rotated in place in the same launch.
// One warp per row; rows of a token: K heads, then V heads, then Q heads.
#ifndef KVCC_CODEGEN_ROTARY_CACHE_WRITE_CUH_
#define KVCC_CODEGEN_ROTARY_CACHE_WRITE_CUH_

#include "kvcc_common.cuh"

namespace kvcc {
constexpr int kWarps = kThreads / 32;
constexpr int kHalf = kHeadDim / 2;

// Stores one row (in shared memory) into part P's cache slot, quantized by P's scheme. The
// whole warp calls it.
template <typename P>
__device__ __forceinline__ void store_row(const float* row, u8* __restrict__ cache,
                                          u16* __restrict__ params, const float* __restrict__ zps,
                                          const float* __restrict__ scales, int blk, int head,
                                          int slot, int lane) {
  u8* dst = cache + P::row_offset(blk, head, slot);
  if constexpr (P::kBits == 16) {
    for (int d = lane; d < kHeadDim; d += 32) reinterpret_cast<u16*>(dst)[d] = float_to_half(row[d]);
    return;
  }
  if constexpr (P::kFp8) {
    for (int d = lane; d < kHeadDim; d += 32) {
      dst[d] = float_to_fp8_e4m3((row[d] - zps[P::param(head, d)]) / scales[P::param(head, d)]);
    }
    return;
  }
  // Per row (online) or per element (per_channel) zp/scale; [qmin, qmax] by the scheme.
  float row_zp = 0.f, row_scale = 1.f;
  int qmin, qmax;
  if constexpr (P::kOnline) {
    float mn = 3.4e38f, mx = -3.4e38f;
    for (int d = lane; d < kHeadDim; d += 32) {
      mn = fminf(mn, row[d]);
      mx = fmaxf(mx, row[d]);
    }
    mn = warp_min(mn);
    mx = warp_max(mx);
    // ir/kv_quant.h OnlineParams: both clamped to the fp16 range, a scale that rounds to
    // zero becomes the smallest subnormal; quantization uses the fp16-rounded values, the ones
    // dequantization reads back.
    u16 scale_h = float_to_half(fminf((mx - mn) / (float)P::kLevels, 65504.f));
    if (!(half_to_float(scale_h) > 0.f)) scale_h = 1;
    const u16 zero_h = float_to_half(fminf(fmaxf(mn, -65504.f), 65504.f));
    row_scale = half_to_float(scale_h);
    row_zp = half_to_float(zero_h);
    qmin = 0;
    qmax = P::kLevels;
    if (lane == 0) {
      const i64 pi = param_index(blk, head, slot);
      params[pi] = scale_h;
      params[pi + 1] = zero_h;
    }
  } else {
    qmin = P::kBits == 8 ? -128 : -8;
    qmax = P::kBits == 8 ? 127 : 7;
  }
  auto quant = [&](int d) -> int {
    float zp = row_zp, scale = row_scale;
    if constexpr (P::kCalibrated) {
      zp = zps[P::param(head, d)];
      scale = scales[P::param(head, d)];
    }
    if (!(scale > 0.f)) return min(max(0, qmin), qmax);  // calibrated params never give this
    const float qv = rintf((row[d] - zp) / scale);
    return (int)fminf(fmaxf(qv, (float)qmin), (float)qmax);
  };
  if constexpr (P::kBits == 8) {
    for (int d = lane; d < kHeadDim; d += 32) dst[d] = (u8)(quant(d) & 0xFF);
  } else {
    for (int i = lane; i < kHalf; i += 32) {
      dst[i] = (u8)((quant(2 * i) & 0xF) | ((quant(2 * i + 1) & 0xF) << 4));
    }
  }
}

// The kernel's body, with restrict-qualified pointers (the parameter struct cannot carry them).
__device__ __forceinline__ void rotary_cache_write(
    const io_t* __restrict__ k, int k_stride,  // token t's K at k + t*k_stride, [kv_heads, d]
    const io_t* __restrict__ v, int v_stride,
    io_t* q, int q_stride,                     // nullable; rotated in place, [heads, d]
    int num_tokens,
    const int* __restrict__ positions,     // [tokens]
    const int* __restrict__ slot_mapping,  // [tokens] block * block_size + slot; < 0 skips
    const float* __restrict__ inv_freq,    // [head_dim / 2]
    u8* __restrict__ k_cache, u8* __restrict__ v_cache,
    u16* __restrict__ k_params, u16* __restrict__ v_params,  // online (scale, zero)
    const float* __restrict__ k_zp, const float* __restrict__ k_scale,
    const float* __restrict__ v_zp, const float* __restrict__ v_scale) {
  __shared__ float srow[kWarps][kHeadDim];
  const int t = blockIdx.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int r = blockIdx.y * kWarps + warp;
  const int rows = 2 * kKvHeads + (q != nullptr ? kHeads : 0);
  if (t >= num_tokens || r >= rows) return;
  const bool is_k = r < kKvHeads, is_v = !is_k && r < 2 * kKvHeads, is_q = r >= 2 * kKvHeads;
  const int head = is_k ? r : is_v ? r - kKvHeads : r - 2 * kKvHeads;
  float* row = srow[warp];
  if (is_v) {
    const io_t* src = v + (i64)t * v_stride + head * kHeadDim;
    for (int d = lane; d < kHeadDim; d += 32) row[d] = load_io(src + d);
  } else {
    const io_t* src = is_k ? k + (i64)t * k_stride + head * kHeadDim
                           : q + (i64)t * q_stride + head * kHeadDim;
    const float pos = (float)positions[t];
    for (int j = lane; j < kHalf; j += 32) {
      const float x1 = load_io(src + j), x2 = load_io(src + j + kHalf);
      float sn, cs;
      sincosf(pos * inv_freq[j], &sn, &cs);
      row[j] = x1 * cs - x2 * sn;
      row[j + kHalf] = x2 * cs + x1 * sn;
    }
  }
  __syncwarp();
  if (is_q) {
    io_t* dst = q + (i64)t * q_stride + head * kHeadDim;
    for (int d = lane; d < kHeadDim; d += 32) store_io(dst + d, row[d]);
    return;
  }
  const int slot_id = slot_mapping[t];
  if (slot_id < 0) return;
  const int blk = slot_id / kBlockSize, slot = slot_id % kBlockSize;
  if (is_k) {
    store_row<KPart>(row, k_cache, k_params, k_zp, k_scale, blk, head, slot, lane);
  } else {
    store_row<VPart>(row, v_cache, v_params, v_zp, v_scale, blk, head, slot, lane);
  }
}
}  // namespace kvcc

extern "C" __global__ void __launch_bounds__(kvcc_spec::kThreads, kvcc_spec::kMinBlocks)
    kvcc_rotary_cache_write(const kvcc::kernels::RotaryCacheWriteParams p) {
  kvcc::rotary_cache_write(static_cast<const kvcc::io_t*>(p.k), p.k_stride,
                           static_cast<const kvcc::io_t*>(p.v), p.v_stride,
                           static_cast<kvcc::io_t*>(p.q), p.q_stride, p.num_tokens, p.positions,
                           p.slot_mapping, p.inv_freq, p.k_cache, p.v_cache, p.k_params,
                           p.v_params, p.k_zp, p.k_scale, p.v_zp, p.v_scale);
}

#endif  // KVCC_CODEGEN_ROTARY_CACHE_WRITE_CUH_
