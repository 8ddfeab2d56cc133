// The decode W4A16 linear for 1-16 tokens over the packed layout of codegen/w4_params.h:
// kvcc_w4_stripe_n<NT>[_z] (y = x W^T + bias, f16 x and y, NT token tiles of 8). The packed
// weight is one run of 512-byte units (strip-major: unit u = strip u / chunks, chunk u % chunks)
// and the launch's warps split that run into equal contiguous stripes, whatever the shape, so
// every SM streams the same number of bytes (Marlin's striped partition) and no SM idles in a
// tail wave. Each warp streams its stripe through a private ring of KVCC_W4_STRIPE_STAGES
// shared-memory stages filled with cp.async (16 bytes of codes and the two scale/zero words per
// lane and unit, no registers held by loads in flight): four such warps per CTA and four CTAs
// per SM keep ~128 KiB of weights in flight per SM. A lane copies and reads back only its own
// bytes, so the ring needs no barrier. Dequantization is the LOP3 0x6400 trick of
// w4_stream.cuh (an exact q - z, or with _z the zero folded out: 1024 + q, and one mma of an
// all-ones A sums the group's activations, w x = s ((1024 + q) x - (1024 + z) x)); the scale is
// applied to the f32 accumulators once per group. The B fragments of a token for a whole chunk
// are its activations at 16 t .. 16 t + 15 (layout version 2): two 16-byte loads, fetched one
// unit ahead. A strip that lies in one stripe is written directly with its bias; a strip split
// between warps adds each warp's partial sums (v4 atomics) into p.ws, and the warp that arrives
// last (p.counters) writes the output and leaves ws and the counter at zero for the next call.
#ifndef KVCC_CODEGEN_W4_STRIPE_CUH_
#define KVCC_CODEGEN_W4_STRIPE_CUH_

#include "ops_common.cuh"
#include "w4_params.h"

namespace kvcc_w4stripe {

using kvcc::kernels::W4PackedParams;

__device__ __forceinline__ unsigned smem_u32(const void* p) {
  unsigned a;
  asm("{\n\t.reg .u64 t;\n\tcvta.to.shared.u64 t, %1;\n\tcvt.u32.u64 %0, t;\n\t}"
      : "=r"(a)
      : "l"(p));
  return a;
}

__device__ __forceinline__ void cp16(unsigned dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
}

__device__ __forceinline__ void cp4(unsigned dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(src) : "memory");
}

__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

template <int N>
__device__ __forceinline__ void cp_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ unsigned hsub2(unsigned a, unsigned b) {
  unsigned d;
  asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}

template <unsigned B, unsigned C>
__device__ __forceinline__ unsigned and_or(unsigned a) {
  unsigned d;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(a), "n"(B), "n"(C));
  return d;
}

__device__ __forceinline__ float f16_lo(unsigned w) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"((unsigned short)(w & 0xFFFFu)));
  return f;
}

__device__ __forceinline__ float f16_hi(unsigned w) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"((unsigned short)(w >> 16)));
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

// Four f32 added at `p` (16-byte aligned) in L2: one vector reduction on sm_90.
__device__ __forceinline__ void red_add4(float* p, const float v[4]) {
#if __CUDA_ARCH__ >= 900
  asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(p), "f"(v[0]), "f"(v[1]),
               "f"(v[2]), "f"(v[3])
               : "memory");
#else
  for (int e = 0; e < 4; ++e) atomicAdd(p + e, v[e]);
#endif
}

// The warp that owns unit u when `warps` warps split `total` units into stripes
// [w total / warps, (w + 1) total / warps).
__device__ __forceinline__ long long owner(long long u, long long total, int warps) {
  return ((u + 1) * warps + total - 1) / total - 1;
}

template <int NT>
__device__ __forceinline__ void store_y(const W4PackedParams& p, int strip, int lane,
                                        const float (&v)[NT][4]) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = strip * KVCC_W4_STRIP + g + 8 * (e >> 1);
      const int tok = nt * 8 + 2 * t + (e & 1);
      if (tok >= p.tokens) continue;
      float y = v[nt][e];
      if (p.bias != nullptr) y += p.bias[row];
      unsigned short h;
      asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(y));
      reinterpret_cast<unsigned short*>(p.y)[(long long)tok * p.out + row] = h;
    }
  }
}

template <int NT, bool FOLD>
__device__ __forceinline__ void stripe_linear(const W4PackedParams& p) {
  constexpr int D = KVCC_W4_STRIPE_STAGES;
  __shared__ __align__(16) uint4 ring_w[KVCC_W4_STRIPE_WARPS][D][32];
  __shared__ __align__(16) uint2 ring_s[KVCC_W4_STRIPE_WARPS][D][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wg = blockIdx.x * KVCC_W4_STRIPE_WARPS + warp;
  if (wg >= p.warps) return;  // no barrier below: a missing warp stalls nobody
  const int g = lane >> 2, t = lane & 3;
  const int chunks = p.in / KVCC_W4_CHUNK, groups = p.in / p.group_size;
  const int cpg = p.group_size / KVCC_W4_CHUNK;  // chunks per group (>= 1)
  const long long total = (long long)(p.out / KVCC_W4_STRIP) * chunks;
  const long long u0 = wg * total / p.warps, u1 = (wg + 1) * total / p.warps;
  const int n = (int)(u1 - u0);  // >= 1: warps <= total
  // Issue side: the next unit to copy, as strip / chunk / group / chunk within the group.
  const uint4* wsrc = reinterpret_cast<const uint4*>(p.codes) + u0 * 32 + lane;
  int is = (int)(u0 / chunks), ic = (int)(u0 - (long long)is * chunks);
  int ig = ic / cpg, igc = ic - ig * cpg;
  const unsigned* szg = p.sz + g;
  const unsigned sw = smem_u32(&ring_w[warp][0][lane]), ss = smem_u32(&ring_s[warp][0][lane]);
  // Compute side: strip cs, chunk cc, chunk within its group ccg.
  const int strip_first = is;
  int cs = is, cc = ic, ccg = igc;
#pragma unroll 1
  for (int i = 0; i < D; ++i) {
    if (i < n) {
      const unsigned* sp = szg + ((long long)is * groups + ig) * KVCC_W4_STRIP;
      cp16(sw + i * 512, wsrc);
      cp4(ss + i * 256, sp);
      cp4(ss + i * 256 + 4, sp + 8);
      wsrc += 32;
      if (++igc == cpg) { igc = 0; ++ig; }
      if (++ic == chunks) { ic = 0; ig = 0; igc = 0; ++is; }
    }
    cp_commit();
  }
  // Each lane's activations: token 8 nt + g (a token past the batch reads the last one; its
  // column feeds only outputs that are never stored), inputs 16 t .. 16 t + 15 of the chunk.
  const uint4* xrow[NT];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    const long long tok = min(nt * 8 + g, p.tokens - 1);
    xrow[nt] = reinterpret_cast<const uint4*>(reinterpret_cast<const unsigned short*>(p.x) +
                                              tok * p.in + 16 * t);
  }
  uint4 xa[NT][2];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    xa[nt][0] = __ldg(xrow[nt] + cc * 8);
    xa[nt][1] = __ldg(xrow[nt] + cc * 8 + 1);
  }
  float acc[NT][4], accg[NT][4], xsum[NT][4];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[nt][e] = accg[nt][e] = xsum[nt][e] = 0.0f;
  }
#pragma unroll 1
  for (int i = 0; i < n; ++i) {
    const int slot = i & (D - 1);
    // The next unit's activations, one unit ahead (chunk 0 again after a strip's last).
    const int ncc = cc + 1 == chunks ? 0 : cc + 1;
    uint4 xn[NT][2];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      xn[nt][0] = __ldg(xrow[nt] + ncc * 8);
      xn[nt][1] = __ldg(xrow[nt] + ncc * 8 + 1);
    }
    cp_wait<D - 1>();
    const uint4 wv = ring_w[warp][slot][lane];
    const uint2 szv = ring_s[warp][slot][lane];
    unsigned zl = 0, zh = 0;
    if (!FOLD) {
      // 1024 + z of row g in both halves; 1024 + 16 z of row g + 8 in both halves.
      zl = __byte_perm(szv.x, 0, 0x3232);
      const unsigned zhi = (((szv.y >> 16) - 0x6400u) << 4) + 0x6400u;
      zh = zhi | (zhi << 16);
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const unsigned w = j == 0 ? wv.x : j == 1 ? wv.y : j == 2 ? wv.z : wv.w;
      const unsigned w8 = w >> 8;
      unsigned a[4];
      a[0] = and_or<0x000F000Fu, 0x64006400u>(w);
      a[1] = and_or<0x00F000F0u, 0x64006400u>(w);
      a[2] = and_or<0x000F000Fu, 0x64006400u>(w8);
      a[3] = and_or<0x00F000F0u, 0x64006400u>(w8);
      if (!FOLD) {
        a[0] = hsub2(a[0], zl);
        a[1] = hsub2(a[1], zh);
        a[2] = hsub2(a[2], zl);
        a[3] = hsub2(a[3], zh);
      }
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const uint4& xv = xa[nt][j >> 1];
        const unsigned b0 = (j & 1) ? xv.z : xv.x, b1 = (j & 1) ? xv.w : xv.y;
        mma16816(accg[nt], a, b0, b1);
        if (FOLD) {
          const unsigned ones[4] = {0x3C003C00u, 0x3C003C00u, 0x3C003C00u, 0x3C003C00u};
          mma16816(xsum[nt], ones, b0, b1);
        }
      }
    }
    const bool last = i + 1 == n, strip_end = cc + 1 == chunks;
    if (ccg + 1 == cpg || last) {
      const float sl = f16_lo(szv.x);
      const float sh = f16_lo(szv.y) * 0.0625f;  // rows g + 8 hold 16 (q - z)
      const float zlo = FOLD ? f16_hi(szv.x) : 0.0f;
      const float zhi = FOLD ? 16.0f * f16_hi(szv.y) - 15360.0f : 0.0f;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        if (FOLD) {
          accg[nt][0] -= zlo * xsum[nt][0];
          accg[nt][1] -= zlo * xsum[nt][1];
          accg[nt][2] -= zhi * xsum[nt][2];
          accg[nt][3] -= zhi * xsum[nt][3];
        }
        acc[nt][0] += sl * accg[nt][0];
        acc[nt][1] += sl * accg[nt][1];
        acc[nt][2] += sh * accg[nt][2];
        acc[nt][3] += sh * accg[nt][3];
#pragma unroll
        for (int e = 0; e < 4; ++e) accg[nt][e] = xsum[nt][e] = 0.0f;
      }
    }
    if (strip_end || last) {
      // This stripe's part of strip cs: all of it (write it), or a share (add it in ws; the
      // last of the strip's warps to arrive writes it).
      const bool whole = strip_end && (cs != strip_first || u0 % chunks == 0);
      if (whole) {
        store_y<NT>(p, cs, lane, acc);
      } else {
        float* wsp = p.ws + ((long long)cs * 32 + lane) * 8;
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) red_add4(wsp + 4 * nt, acc[nt]);
        __threadfence();
        __syncwarp();
        unsigned prev = 0;
        if (lane == 0) prev = atomicAdd(p.counters + cs, 1u);
        prev = __shfl_sync(0xFFFFFFFFu, prev, 0);
        const long long first = (long long)cs * chunks;
        const long long sharers =
            owner(first + chunks - 1, total, p.warps) - owner(first, total, p.warps) + 1;
        if (prev + 1 == sharers) {
          __threadfence();
          float sum[NT][4];
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
            float4 v;
            asm volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];"
                         : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
                         : "l"(wsp + 4 * nt)
                         : "memory");
            sum[nt][0] = v.x;
            sum[nt][1] = v.y;
            sum[nt][2] = v.z;
            sum[nt][3] = v.w;
            asm volatile("st.global.cg.v4.f32 [%0], {%1, %1, %1, %1};" ::"l"(wsp + 4 * nt),
                         "f"(0.0f)
                         : "memory");
          }
          if (lane == 0) p.counters[cs] = 0;
          store_y<NT>(p, cs, lane, sum);
        }
      }
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[nt][e] = 0.0f;
      }
    }
    // Refill the slot just read with the unit D ahead.
    if (i + D < n) {
      const unsigned* sp = szg + ((long long)is * groups + ig) * KVCC_W4_STRIP;
      cp16(sw + slot * 512, wsrc);
      cp4(ss + slot * 256, sp);
      cp4(ss + slot * 256 + 4, sp + 8);
      wsrc += 32;
      if (++igc == cpg) { igc = 0; ++ig; }
      if (++ic == chunks) { ic = 0; ig = 0; igc = 0; ++is; }
    }
    cp_commit();
    if (++ccg == cpg) ccg = 0;
    if (++cc == chunks) { cc = 0; ccg = 0; ++cs; }
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      xa[nt][0] = xn[nt][0];
      xa[nt][1] = xn[nt][1];
    }
  }
}

}  // namespace kvcc_w4stripe

#define KVCC_W4_STRIPE_ENTRY(NT)                                                          \
  extern "C" __global__ void __launch_bounds__(KVCC_W4_STRIPE_WARPS * 32, 4)              \
      kvcc_w4_stripe_n##NT(const kvcc::kernels::W4PackedParams p) {                       \
    kvcc_w4stripe::stripe_linear<NT, false>(p);                                           \
  }                                                                                       \
  extern "C" __global__ void __launch_bounds__(KVCC_W4_STRIPE_WARPS * 32, 4)              \
      kvcc_w4_stripe_n##NT##_z(const kvcc::kernels::W4PackedParams p) {                   \
    kvcc_w4stripe::stripe_linear<NT, true>(p);                                            \
  }
KVCC_W4_STRIPE_ENTRY(1)
KVCC_W4_STRIPE_ENTRY(2)
#undef KVCC_W4_STRIPE_ENTRY

#endif  // KVCC_CODEGEN_W4_STRIPE_CUH_
