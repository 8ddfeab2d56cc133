// W4A16 kernels over the 4-bit layout of ir/group_quant.h (codegen/w4_params.h):
// kvcc_w4_gemv, the decode GEMV (one warp per output row, up to KVCC_W4_TOKENS tokens per
// CTA row, each lane dequantizing eight weights from one 32-bit load and reusing them for every
// token), and kvcc_w4_dequant_f16, which expands the weight to f16 for the tensor-core GEMM of
// large batches and prefill. Dequantization is (q - z) * s in f32, as the CPU backend does.
#ifndef KVCC_CODEGEN_W4_GEMV_CUH_
#define KVCC_CODEGEN_W4_GEMV_CUH_

#include "ops_common.cuh"
#include "w4_params.h"

// Tokens one CTA computes (blockIdx.y covers more); the host splits batches by it.
#ifndef KVCC_W4_TOKENS
#define KVCC_W4_TOKENS 16
#endif
#define KVCC_W4_WARPS 8

namespace kvcc_w4 {

// Element i of a packed i4 buffer as -8..7.
__device__ __forceinline__ int i4_at(const unsigned char* p, long long i) {
  const int nib = (p[i >> 1] >> ((i & 1) * 4)) & 0xF;
  return nib - ((nib & 8) << 1);
}

__device__ __forceinline__ float scale_at(const void* scales, long long i) {
  kvcc_ops::f16_t h;
  h.bits = reinterpret_cast<const unsigned short*>(scales)[i];
  return kvcc_ops::to_float(h);
}

// The eight weights of input chunk c (inputs 8c .. 8c+7) of `row`.
__device__ __forceinline__ void dequant8(const kvcc::kernels::W4LinearParams& p, int row, int c,
                                         float w[8]) {
  const unsigned word =
      reinterpret_cast<const unsigned*>(p.codes + (long long)row * (p.in / 2))[c];
  const int groups = p.in / p.group_size;
  const long long g = (long long)row * groups + (c * 8) / p.group_size;
  const float s = scale_at(p.scales, g);
  const int z = p.zeros != nullptr ? i4_at(p.zeros, g) : 0;
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const int nib = (word >> (4 * k)) & 0xF;
    w[k] = (float)((nib - ((nib & 8) << 1)) - z) * s;
  }
}

}  // namespace kvcc_w4

extern "C" __global__ void __launch_bounds__(KVCC_W4_WARPS * 32)
    kvcc_w4_gemv(const kvcc::kernels::W4LinearParams p) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * KVCC_W4_WARPS + (threadIdx.x >> 5);
  if (row >= p.out) return;
  const int t0 = blockIdx.y * KVCC_W4_TOKENS;
  const int nt = min(KVCC_W4_TOKENS, p.tokens - t0);
  float acc[KVCC_W4_TOKENS];
#pragma unroll
  for (int t = 0; t < KVCC_W4_TOKENS; ++t) acc[t] = 0.0f;
  const int chunks = p.in / 8;
  for (int c = lane; c < chunks; c += 32) {
    float w[8];
    kvcc_w4::dequant8(p, row, c, w);
#pragma unroll
    for (int t = 0; t < KVCC_W4_TOKENS; ++t) {
      if (t < nt) {
        const float4* xp =
            reinterpret_cast<const float4*>(p.x + (long long)(t0 + t) * p.in + c * 8);
        const float4 a = xp[0], b = xp[1];
        acc[t] += a.x * w[0] + a.y * w[1] + a.z * w[2] + a.w * w[3] + b.x * w[4] + b.y * w[5] +
                  b.z * w[6] + b.w * w[7];
      }
    }
  }
#pragma unroll
  for (int t = 0; t < KVCC_W4_TOKENS; ++t) {
    float v = acc[t];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0 && t < nt) {
      p.y[(long long)(t0 + t) * p.out + row] = v + (p.bias != nullptr ? p.bias[row] : 0.0f);
    }
  }
}

extern "C" __global__ void __launch_bounds__(KVCC_W4_WARPS * 32)
    kvcc_w4_dequant_f16(const kvcc::kernels::W4LinearParams p) {
  const long long chunks = (long long)p.out * (p.in / 8);
  unsigned short* out = reinterpret_cast<unsigned short*>(p.w16);
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < chunks;
       i += (long long)gridDim.x * blockDim.x) {
    const int row = (int)(i / (p.in / 8)), c = (int)(i % (p.in / 8));
    float w[8];
    kvcc_w4::dequant8(p, row, c, w);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      out[(long long)row * p.in + c * 8 + k] = kvcc_ops::from_float<kvcc_ops::f16_t>(w[k]).bits;
    }
  }
}

#endif  // KVCC_CODEGEN_W4_GEMV_CUH_
