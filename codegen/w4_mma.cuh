// The tensor-core W4A16 kernels over the packed layout of codegen/w4_params.h:
// kvcc_w4_repack (ir/group_quant.h layout -> packed, once per weight), kvcc_w4_mma_n<8 NT>
// (y = x W^T + bias for up to 8 NT tokens per CTA: the weight is mma's A operand, so 16 output
// rows fill the m16 side and a decode batch of 1..8 tokens the n8 side; each lane takes one
// 128-bit load per 64 inputs, dequantizes with the 0x6400 magic-number trick into f16 fragments,
// and accumulates in f32; CTAs split the input dimension and add their partial sums atomically
// when gridDim.z > 1), kvcc_w4_fill (y = bias or 0 before a split launch) and kvcc_w4_unpack_f16
// (the packed weight back to f16 [out, in] for the cuBLASLt GEMM of prefill).
#ifndef KVCC_CODEGEN_W4_MMA_CUH_
#define KVCC_CODEGEN_W4_MMA_CUH_

#include "ops_common.cuh"
#include "w4_params.h"

#define KVCC_W4_MMA_WARPS 8

namespace kvcc_w4mma {

using kvcc::kernels::W4PackedParams;

__device__ __forceinline__ unsigned half2_bits(float lo, float hi) {
  const unsigned short l = kvcc_ops::from_float<kvcc_ops::f16_t>(lo).bits;
  const unsigned short h = kvcc_ops::from_float<kvcc_ops::f16_t>(hi).bits;
  return (unsigned)l | ((unsigned)h << 16);
}

// (a - b) * c on packed half pairs.
__device__ __forceinline__ unsigned hsubmul2(unsigned a, unsigned b, unsigned c) {
  unsigned d;
  asm("{\n\t.reg .b32 t;\n\tsub.rn.f16x2 t, %1, %2;\n\tmul.rn.f16x2 %0, t, %3;\n\t}"
      : "=r"(d)
      : "r"(a), "r"(b), "r"(c));
  return d;
}

__device__ __forceinline__ void mma16816(float c[4], const unsigned a[4], unsigned b0,
                                         unsigned b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// The A fragment of one tile from its packed word; s_* and z_* are the scale and 1024 + zero
// of rows g (lo) and g + 8 (hi), each in both halves.
__device__ __forceinline__ void dequant_tile(unsigned w, unsigned s_lo, unsigned z_lo,
                                             unsigned s_hi, unsigned z_hi, unsigned a[4]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const unsigned h = ((w >> (4 * i)) & 0x000F000Fu) | 0x64006400u;
    a[i] = (i & 1) ? hsubmul2(h, z_hi, s_hi) : hsubmul2(h, z_lo, s_lo);
  }
}

// dequant_tile from the packed scale/zero words of rows g and g + 8.
__device__ __forceinline__ void dequant_tile(unsigned w, unsigned sz_lo, unsigned sz_hi,
                                             unsigned a[4]) {
  dequant_tile(w, __byte_perm(sz_lo, 0, 0x1010), __byte_perm(sz_lo, 0, 0x3232),
               __byte_perm(sz_hi, 0, 0x1010), __byte_perm(sz_hi, 0, 0x3232), a);
}

// x f32, or f16 (XF16: the _h entries, a half-activation model's); y f32 either way (split-K
// partial sums meet in it atomically).
template <int NT, bool XF16 = false>
__device__ __forceinline__ void mma_linear(const W4PackedParams& p) {
  constexpr int kTokens = NT * 8;
  constexpr int kMaxK = KVCC_W4_X_BYTES / (kTokens * 2);
  constexpr int U = 4;  // 128-bit loads per lane per step; the next step's U are in flight too
  __shared__ __align__(16) unsigned xs[KVCC_W4_X_BYTES / 4];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int t0 = blockIdx.y * kTokens;
  const int k0 = blockIdx.z * p.k_split;
  const int klen = min(min(p.k_split, kMaxK), p.in - k0);
  const int strips = p.out / KVCC_W4_STRIP, groups = p.in / p.group_size;
  const int chunks = klen / KVCC_W4_CHUNK, c0 = k0 / KVCC_W4_CHUNK;
  const int g = lane >> 2, t = lane & 3;
  // The first strip's first loads leave before the activations are staged, so their latency
  // overlaps the staging.
  uint4 q[U];
  {
    const int mt = blockIdx.x * p.strips_per_warp * KVCC_W4_MMA_WARPS + warp;
    if (mt < strips) {
      const uint4* wp = reinterpret_cast<const uint4*>(p.codes) +
                        (kvcc::kernels::W4PackedWord(mt, c0, lane, 0, p.in) >> 2);
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (u < chunks) q[u] = __ldg(wp + u * 32);
      }
    }
  }
  // Activations -> f16 B fragments: word ((tile * NT + nt) * 32 + lane) * 2 + hi. Only the
  // tokens present: a column of an absent token feeds only outputs that are never stored.
  // Input k of the slice (k0 is a multiple of 64) is, in layout version 2, lane t = (k & 63) / 16
  // of tile 4 (k / 64) + (k / 4) % 4, register hi = (k / 2) % 2.
  const int present = min(kTokens, p.tokens - t0);
  const int pairs = klen / 2;
  for (int n = 0; n < present; ++n) {
    const long long row = (long long)(t0 + n) * p.in + k0;
    const int lane_base = (n & 7) * 4, nt = n >> 3;
    for (int i = threadIdx.x; i < pairs; i += blockDim.x) {
      const int k = 2 * i;
      unsigned bits;
      if (XF16) {
        bits = reinterpret_cast<const unsigned*>(p.x)[(row + k) >> 1];
      } else {
        const float2 v = *reinterpret_cast<const float2*>(p.x + row + k);
        bits = half2_bits(v.x, v.y);
      }
      const int tile = (k >> 6) * 4 + ((k >> 2) & 3);
      xs[((tile * NT + nt) * 32 + lane_base + ((k & 63) >> 4)) * 2 + ((k >> 1) & 1)] = bits;
    }
  }
  __syncthreads();
  const uint2* xf = reinterpret_cast<const uint2*>(xs);
  for (int s = 0; s < p.strips_per_warp; ++s) {
    const int mt = (blockIdx.x * p.strips_per_warp + s) * KVCC_W4_MMA_WARPS + warp;
    if (mt >= strips) break;
    const uint4* wp = reinterpret_cast<const uint4*>(p.codes) +
                      (kvcc::kernels::W4PackedWord(mt, c0, lane, 0, p.in) >> 2);
    const unsigned* szp = p.sz + kvcc::kernels::W4PackedScale(mt, 0, g, groups);
    if (s > 0) {
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (u < chunks) q[u] = __ldg(wp + u * 32);
      }
    }
    float acc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
    for (int c = 0; c < chunks; c += U) {
      uint4 next[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (c + U + u < chunks) next[u] = __ldg(wp + (c + U + u) * 32);
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (c + u >= chunks) break;
        const unsigned qw[4] = {q[u].x, q[u].y, q[u].z, q[u].w};
        // The lane's 16 inputs of the chunk lie in one group (16 | group size or 64 | it).
        const int grp = (k0 + (c + u) * KVCC_W4_CHUNK + 16 * t) / p.group_size;
        const unsigned lo = __ldg(szp + grp * KVCC_W4_STRIP);
        const unsigned hi = __ldg(szp + grp * KVCC_W4_STRIP + 8);
        const unsigned s_lo = __byte_perm(lo, 0, 0x1010), z_lo = __byte_perm(lo, 0, 0x3232);
        const unsigned s_hi = __byte_perm(hi, 0, 0x1010), z_hi = __byte_perm(hi, 0, 0x3232);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          unsigned a[4];
          dequant_tile(qw[j], s_lo, z_lo, s_hi, z_hi, a);
          const int tile = (c + u) * 4 + j;  // within this CTA's slice
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
            const uint2 b = xf[(tile * NT + nt) * 32 + lane];
            mma16816(acc[nt], a, b.x, b.y);
          }
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u) q[u] = next[u];
    }
    // c0, c1: row g, tokens 2t, 2t + 1; c2, c3: row g + 8.
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = mt * KVCC_W4_STRIP + g + 8 * (e >> 1);
        const int tok = t0 + nt * 8 + 2 * t + (e & 1);
        if (tok >= p.tokens) continue;
        float* dst = p.y + (long long)tok * p.out + row;
        if (gridDim.z > 1) {
          atomicAdd(dst, acc[nt][e]);
        } else {
          *dst = acc[nt][e] + (p.bias != nullptr ? p.bias[row] : 0.0f);
        }
      }
    }
  }
}

}  // namespace kvcc_w4mma

#define KVCC_W4_MMA_ENTRY(NT)                                                   \
  extern "C" __global__ void __launch_bounds__(KVCC_W4_MMA_WARPS * 32)          \
      kvcc_w4_mma_n##NT(const kvcc::kernels::W4PackedParams p) {                \
    kvcc_w4mma::mma_linear<NT>(p);                                              \
  }                                                                             \
  extern "C" __global__ void __launch_bounds__(KVCC_W4_MMA_WARPS * 32)          \
      kvcc_w4_mma_n##NT##_h(const kvcc::kernels::W4PackedParams p) {            \
    kvcc_w4mma::mma_linear<NT, true>(p);                                        \
  }
KVCC_W4_MMA_ENTRY(1)
KVCC_W4_MMA_ENTRY(2)
KVCC_W4_MMA_ENTRY(4)
KVCC_W4_MMA_ENTRY(8)
#undef KVCC_W4_MMA_ENTRY

// y[t, o] = bias[o] (or 0) for a split launch's atomic partial sums; grid-stride.
extern "C" __global__ void kvcc_w4_fill(const kvcc::kernels::W4PackedParams p) {
  const long long n = (long long)p.tokens * p.out;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    p.y[i] = p.bias != nullptr ? p.bias[i % p.out] : 0.0f;
  }
}

// One thread per packed code word, then one per scale/zero word; grid-stride. Writes through
// the const pointers of the params (the only kernel that does).
extern "C" __global__ void kvcc_w4_repack(const kvcc::kernels::W4PackedParams p) {
  unsigned* codes = const_cast<unsigned*>(p.codes);
  unsigned* sz = const_cast<unsigned*>(p.sz);
  const long long words = (long long)p.out * p.in / 8;
  const int groups = p.in / p.group_size;
  const long long sz_words = (long long)p.out * groups;
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < words; i += stride) {
    const int j = (int)(i & 3), lane = (int)((i >> 2) & 31);
    const long long sc = i >> 7;  // strip * chunks + chunk
    const int chunk = (int)(sc % (p.in / KVCC_W4_CHUNK));
    const long long strip = sc / (p.in / KVCC_W4_CHUNK);
    unsigned w = 0;
#pragma unroll
    for (int n = 0; n < 8; ++n) {
      const long long row = strip * KVCC_W4_STRIP + kvcc::kernels::W4NibbleRow(lane, n);
      const long long k = (long long)chunk * KVCC_W4_CHUNK + kvcc::kernels::W4NibbleCol(lane, j, n);
      const long long e = row * p.in + k;
      const unsigned nib = (p.src_codes[e >> 1] >> ((e & 1) * 4)) & 0xF;
      w |= (nib ^ 8u) << (4 * n);  // stored q - 8 -> q
    }
    codes[i] = w;
  }
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < sz_words; i += stride) {
    const int row = (int)(i % KVCC_W4_STRIP);
    const long long sg = i / KVCC_W4_STRIP;  // strip * groups + group
    const int grp = (int)(sg % groups);
    const long long src = (sg / groups * KVCC_W4_STRIP + row) * groups + grp;
    const unsigned s = reinterpret_cast<const unsigned short*>(p.src_scales)[src];
    unsigned z = 8;
    if (p.src_zeros != nullptr) z = ((p.src_zeros[src >> 1] >> ((src & 1) * 4)) & 0xF) ^ 8u;
    sz[i] = s | ((0x6400u + z) << 16);
  }
}

// The packed weight as f16 [out, in] (w16), one thread per packed word; grid-stride.
extern "C" __global__ void kvcc_w4_unpack_f16(const kvcc::kernels::W4PackedParams p) {
  unsigned short* out = reinterpret_cast<unsigned short*>(p.w16);
  const long long words = (long long)p.out * p.in / 8;
  const int groups = p.in / p.group_size;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < words;
       i += (long long)gridDim.x * blockDim.x) {
    const int j = (int)(i & 3), lane = (int)((i >> 2) & 31);
    const long long sc = i >> 7;
    const int chunk = (int)(sc % (p.in / KVCC_W4_CHUNK));
    const long long strip = sc / (p.in / KVCC_W4_CHUNK);
    const int kbase = chunk * KVCC_W4_CHUNK;
    const int grp = (kbase + 16 * (lane & 3)) / p.group_size;  // the lane's inputs' group
    const int g = lane >> 2;
    unsigned a[4];
    kvcc_w4mma::dequant_tile(p.codes[i], p.sz[kvcc::kernels::W4PackedScale(strip, grp, g, groups)],
                             p.sz[kvcc::kernels::W4PackedScale(strip, grp, g + 8, groups)], a);
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      // Register r holds nibbles r (low half) and r + 4 (high half): adjacent inputs.
      const long long row = strip * KVCC_W4_STRIP + kvcc::kernels::W4NibbleRow(lane, r);
      const int k = kbase + kvcc::kernels::W4NibbleCol(lane, j, r);
      *reinterpret_cast<unsigned*>(out + row * p.in + k) = a[r];
    }
  }
}

#endif  // KVCC_CODEGEN_W4_MMA_CUH_
