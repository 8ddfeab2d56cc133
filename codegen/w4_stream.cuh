// The small-batch W4A16 linear over the packed layout of codegen/w4_params.h:
// kvcc_w4_stream_n<NT>_s<S>[_h|_hz] (y = x W^T + bias, 8 NT tokens per CTA; x and y f32, or
// both f16 in the _h and _hz entries: the f16 activations of a half-activation model; _hz folds
// the zero point out of the dequantization, see FOLD). One CTA owns S whole 16-row strips and its 8 warps split the input dimension
// between them, so there is no split-K across CTAs: the partial sums meet in shared memory and
// one thread writes each output with its bias (no atomics, no fill launch). Each warp keeps a
// ring of 8 chunk loads (128-bit per lane) in flight across its strips. Dequantization is one
// LOP3 per fragment register (0x000F000F / 0x00F000F0 masks over 0x64006400: 1024 + q for rows
// g, 1024 + 16 q for rows g + 8) and one sub.f16x2 of 1024 + z (resp. 1024 + 16 z): the A
// operand is the exact integer (q - z) (times 16), the scale is applied per group to the f32
// accumulators, so no f16 rounding of the weight enters the sum. Group sizes that are multiples
// of 64 only (a chunk lies in one group); others take kvcc_w4_mma_n* (codegen/w4_mma.cuh).
#ifndef KVCC_CODEGEN_W4_STREAM_CUH_
#define KVCC_CODEGEN_W4_STREAM_CUH_

#include "ops_common.cuh"
#include "w4_params.h"

#define KVCC_W4_STREAM_WARPS 8
// 128-bit loads each warp keeps in flight (chunks x strips).
#define KVCC_W4_STREAM_RING 8

namespace kvcc_w4stream {

using kvcc::kernels::W4PackedParams;

__device__ __forceinline__ unsigned hsub2(unsigned a, unsigned b) {
  unsigned d;
  asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}

// (a & b) | c in one LOP3 (written as plain C, ptxas emits an AND and an OR: LOP3 takes only
// one immediate).
template <unsigned B, unsigned C>
__device__ __forceinline__ unsigned and_or(unsigned a) {
  unsigned d;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(a), "n"(B), "n"(C));
  return d;
}

__device__ __forceinline__ unsigned pack_f16x2(float lo, float hi) {
  unsigned d;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo));
  return d;
}

__device__ __forceinline__ float f16_lo(unsigned w) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"((unsigned short)(w & 0xFFFFu)));
  return f;
}

__device__ __forceinline__ void mma16816(float c[4], const unsigned a[4], unsigned b0,
                                         unsigned b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// The B fragment of tile j (layout version 2: inputs 16t + 4j .. 16t + 4j + 3 of the chunk, one
// token) as f16x2, from `row` = the token's activations at input 16t of the chunk (f32, or f16
// when XF16).
template <bool XF16>
__device__ __forceinline__ void load_b(const unsigned char* row, int j, unsigned b[2]) {
  if (XF16) {
    const uint2 v = __ldg(reinterpret_cast<const uint2*>(row) + j);
    b[0] = v.x;
    b[1] = v.y;
  } else {
    const float4 v = __ldg(reinterpret_cast<const float4*>(row) + j);
    b[0] = pack_f16x2(v.x, v.y);
    b[1] = pack_f16x2(v.z, v.w);
  }
}

__device__ __forceinline__ float f16_hi(unsigned w) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"((unsigned short)(w >> 16)));
  return f;
}

// FOLD (f16 only): the A operand is 1024 + q (1024 + 16 q) as the LOP3 leaves it, with no
// subtraction of the zero; one more mma per tile and token tile, of an all-ones A, sums the
// group's activations X per token, and the flush subtracts (1024 + z) X (resp. (1024 + 16 z) X)
// before scaling: w x = s ((1024 + q) x - (1024 + z) x).
template <int NT, int S, bool XF16, bool FOLD = false>
__device__ __forceinline__ void stream_linear(const W4PackedParams& p) {
  // Chunks in flight per strip; two token tiles over two strips keep only 4 loads in flight so
  // that the accumulators stay in the 128 registers that let two CTAs share an SM (four strips
  // per CTA did not fit them either).
  constexpr int D = NT * S >= 4 ? 2 : KVCC_W4_STREAM_RING / S;
  __shared__ float red[KVCC_W4_STREAM_WARPS * S * NT * 4 * 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int strips = p.out / KVCC_W4_STRIP, groups = p.in / p.group_size;
  const int chunks = p.in / KVCC_W4_CHUNK;
  const int cpg = p.group_size / KVCC_W4_CHUNK;  // chunks per group (>= 1)
  // CTA b takes token tile b % tiles of strip group b / tiles: the token tiles of one strip
  // group run side by side, so a batch above 8 NT tokens reads each weight byte from DRAM
  // about once and from the L2 once per tile.
  const int tiles = (p.tokens + NT * 8 - 1) / (NT * 8);
  const int strip0 = (blockIdx.x / tiles) * S;
  const int t0 = (blockIdx.x % tiles) * NT * 8;
  const int cb = warp * chunks / KVCC_W4_STREAM_WARPS;
  const int ce = (warp + 1) * chunks / KVCC_W4_STREAM_WARPS;
  // Running pointers (one per strip) to the next chunk to load and its group's scale words,
  // advanced by additions: recomputing 64-bit addresses per chunk cost more instructions than
  // the dequantization. A tail CTA's missing strips read strip0 again; their sums are never
  // stored.
  const uint4* lp[S];
  const unsigned* lsp[S];
  int lg = cb / cpg;                    // group of the next chunk loaded
  int ll = cpg - (cb - lg * cpg);       // chunks of it still to load
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const int mt = strip0 + s < strips ? strip0 + s : strip0;
    lp[s] = reinterpret_cast<const uint4*>(p.codes) +
            (kvcc::kernels::W4PackedWord(mt, cb, lane, 0, p.in) >> 2);
    lsp[s] = p.sz + kvcc::kernels::W4PackedScale(mt, lg, g, groups);
  }
  // Each lane's activations at the chunk being computed, per token tile; a token past the
  // batch reads the last one instead (unconditional loads, no divergence): its column feeds
  // only outputs that are never stored.
  constexpr int kXBytes = XF16 ? 2 : 4;
  const unsigned char* xp[NT];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    const long long tok = min(t0 + nt * 8 + g, p.tokens - 1);
    xp[nt] = reinterpret_cast<const unsigned char*>(p.x) +
             (tok * p.in + (long long)cb * KVCC_W4_CHUNK + 16 * t) * kXBytes;
  }
  uint4 buf[D][S];
  unsigned szb[D][S][2];
#pragma unroll
  for (int u = 0; u < D; ++u) {
    if (cb + u < ce) {
#pragma unroll
      for (int s = 0; s < S; ++s) {
        buf[u][s] = __ldg(lp[s]);
        szb[u][s][0] = __ldg(lsp[s]);
        szb[u][s][1] = __ldg(lsp[s] + 8);
        lp[s] += 32;
      }
      if (--ll == 0) {
        ll = cpg;
#pragma unroll
        for (int s = 0; s < S; ++s) lsp[s] += KVCC_W4_STRIP;
      }
    }
  }
  float acc[S][NT][4], accg[S][NT][4], xsum[NT][4];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) xsum[nt][e] = 0.0f;
  }
#pragma unroll
  for (int s = 0; s < S; ++s) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[s][nt][e] = accg[s][nt][e] = 0.0f;
    }
  }
  // The chunk after which the group accumulators are scaled into acc: a group's end or the
  // warp's last chunk.
  int flush_at = min(ce, (cb / cpg + 1) * cpg) - 1;
  for (int c = cb; c < ce; c += D) {
#pragma unroll
    for (int u = 0; u < D; ++u) {
      const int cc = c + u;
      if (cc < ce) {
        unsigned zl[S], zh[S];
#pragma unroll
        for (int s = 0; s < S; ++s) {
          if (!FOLD) {
            // 1024 + z of row g in both halves; 1024 + 16 z of row g + 8 in both halves.
            zl[s] = __byte_perm(szb[u][s][0], 0, 0x3232);
            const unsigned zhi = (((szb[u][s][1] >> 16) - 0x6400u) << 4) + 0x6400u;
            zh[s] = zhi | (zhi << 16);
          }
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          unsigned b[NT][2];
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
            load_b<XF16>(xp[nt], j, b[nt]);
          }
#pragma unroll
          for (int s = 0; s < S; ++s) {
            const unsigned w = j == 0 ? buf[u][s].x : j == 1 ? buf[u][s].y : j == 2 ? buf[u][s].z
                                                                                  : buf[u][s].w;
            const unsigned w8 = w >> 8;
            unsigned a[4];
            a[0] = and_or<0x000F000Fu, 0x64006400u>(w);
            a[1] = and_or<0x00F000F0u, 0x64006400u>(w);
            a[2] = and_or<0x000F000Fu, 0x64006400u>(w8);
            a[3] = and_or<0x00F000F0u, 0x64006400u>(w8);
            if (!FOLD) {
              a[0] = hsub2(a[0], zl[s]);
              a[1] = hsub2(a[1], zh[s]);
              a[2] = hsub2(a[2], zl[s]);
              a[3] = hsub2(a[3], zh[s]);
            }
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) mma16816(accg[s][nt], a, b[nt][0], b[nt][1]);
          }
          if (FOLD) {
            const unsigned ones[4] = {0x3C003C00u, 0x3C003C00u, 0x3C003C00u, 0x3C003C00u};
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) mma16816(xsum[nt], ones, b[nt][0], b[nt][1]);
          }
        }
        if (cc == flush_at) {
#pragma unroll
          for (int s = 0; s < S; ++s) {
            const float sl = f16_lo(szb[u][s][0]);
            const float sh = f16_lo(szb[u][s][1]) * 0.0625f;  // rows g + 8 hold 16 (q - z)
            // FOLD: the zero terms, 1024 + z (row g) and 1024 + 16 z = 16 (1024 + z) - 15360.
            const float zlo = FOLD ? f16_hi(szb[u][s][0]) : 0.0f;
            const float zhi = FOLD ? 16.0f * f16_hi(szb[u][s][1]) - 15360.0f : 0.0f;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
              if (FOLD) {
                accg[s][nt][0] -= zlo * xsum[nt][0];
                accg[s][nt][1] -= zlo * xsum[nt][1];
                accg[s][nt][2] -= zhi * xsum[nt][2];
                accg[s][nt][3] -= zhi * xsum[nt][3];
              }
              acc[s][nt][0] += sl * accg[s][nt][0];
              acc[s][nt][1] += sl * accg[s][nt][1];
              acc[s][nt][2] += sh * accg[s][nt][2];
              acc[s][nt][3] += sh * accg[s][nt][3];
#pragma unroll
              for (int e = 0; e < 4; ++e) accg[s][nt][e] = 0.0f;
            }
          }
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
            for (int e = 0; e < 4; ++e) xsum[nt][e] = 0.0f;
          }
          flush_at = min(ce, flush_at + 1 + cpg) - 1;
        }
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) xp[nt] += KVCC_W4_CHUNK * kXBytes;
        // Refill this slot with the chunk D ahead.
        if (cc + D < ce) {
#pragma unroll
          for (int s = 0; s < S; ++s) {
            buf[u][s] = __ldg(lp[s]);
            szb[u][s][0] = __ldg(lsp[s]);
            szb[u][s][1] = __ldg(lsp[s] + 8);
            lp[s] += 32;
          }
          if (--ll == 0) {
            ll = cpg;
#pragma unroll
            for (int s = 0; s < S; ++s) lsp[s] += KVCC_W4_STRIP;
          }
        }
      }
    }
  }
  // The warps' partial sums meet in shared memory: red[((warp S + s) NT + nt) 4 + e][lane].
#pragma unroll
  for (int s = 0; s < S; ++s) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) red[(((warp * S + s) * NT + nt) * 4 + e) * 32 + lane] = acc[s][nt][e];
    }
  }
  __syncthreads();
  constexpr int kOut = S * NT * 4 * 32;
  for (int i = threadIdx.x; i < kOut; i += KVCC_W4_STREAM_WARPS * 32) {
    const int l = i & 31, e = (i >> 5) & 3, nt = (i >> 7) % NT, s = (i >> 7) / NT;
    const int mt = strip0 + s;
    const int row = mt * KVCC_W4_STRIP + (l >> 2) + 8 * (e >> 1);
    const int tok = t0 + nt * 8 + 2 * (l & 3) + (e & 1);
    if (mt >= strips || tok >= p.tokens) continue;
    float v = 0.0f;
#pragma unroll
    for (int w = 0; w < KVCC_W4_STREAM_WARPS; ++w) v += red[w * kOut + i];
    if (p.bias != nullptr) v += p.bias[row];
    const long long at = (long long)tok * p.out + row;
    if (XF16) {
      unsigned short h;
      asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
      reinterpret_cast<unsigned short*>(p.y)[at] = h;
    } else {
      p.y[at] = v;
    }
  }
}

}  // namespace kvcc_w4stream

#define KVCC_W4_STREAM_ENTRY(NT, S)                                                       \
  extern "C" __global__ void __launch_bounds__(KVCC_W4_STREAM_WARPS * 32, 2)              \
      kvcc_w4_stream_n##NT##_s##S(const kvcc::kernels::W4PackedParams p) {                \
    kvcc_w4stream::stream_linear<NT, S, false>(p);                                        \
  }                                                                                       \
  extern "C" __global__ void __launch_bounds__(KVCC_W4_STREAM_WARPS * 32, 2)              \
      kvcc_w4_stream_n##NT##_s##S##_h(const kvcc::kernels::W4PackedParams p) {            \
    kvcc_w4stream::stream_linear<NT, S, true>(p);                                         \
  }                                                                                       \
  extern "C" __global__ void __launch_bounds__(KVCC_W4_STREAM_WARPS * 32, 2)              \
      kvcc_w4_stream_n##NT##_s##S##_hz(const kvcc::kernels::W4PackedParams p) {           \
    kvcc_w4stream::stream_linear<NT, S, true, true>(p);                                   \
  }
KVCC_W4_STREAM_ENTRY(1, 1)
KVCC_W4_STREAM_ENTRY(1, 2)
KVCC_W4_STREAM_ENTRY(2, 1)
KVCC_W4_STREAM_ENTRY(2, 2)
#undef KVCC_W4_STREAM_ENTRY

#endif  // KVCC_CODEGEN_W4_STREAM_CUH_
