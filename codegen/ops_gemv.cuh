// The skinny linear of decode steps (1-16 tokens): kvcc_gemv_<w>_n<NT>_s<S>_d<D>, y = x W^T +
// bias with W [out, in] f16 or bf16 as the CUDA backend stores it, x in the same type, f32
// accumulation, f16 or f32 output. At these batches the linear only streams its weight, so the
// kernel is built around the load stream: a CTA owns S whole 16-row strips and its 8 warps split
// the input dimension between them (no split-K across CTAs: the partial sums meet in shared
// memory and one thread writes each output with its bias; no atomics, no fill launch). Each lane
// keeps D chunks of its rows in flight (a chunk: 16 rows x 64 inputs per warp, four 128-bit
// weight loads per lane and strip, plus the activations of the same inputs), and computes with
// mma.sync m16n8k16: weight rows are M, tokens N (NT tiles of 8), so the 128-bit loads are the A
// fragments as they come. The fragments' k order is a permutation of the inputs, the same one
// for A and B, which a dot product does not see: lane (g, t) holds inputs 32 h + 8 t .. + 8
// (h = 0, 1) of its rows g and g + 8 and of token g, and tile j takes words 2 (j & 1) and
// 2 (j & 1) + 1 of piece j / 2 as its k = 2t.. and 2t + 8.. pairs. Launched as a programmatic
// dependent (ops_common.cuh), a CTA loads its first D chunks of weight, and prefetches
// p.l2_prefetch more per warp into the L2, before it waits for the previous kernel: the weight
// stream starts while that kernel still runs; only the activations wait.
#ifndef KVCC_CODEGEN_OPS_GEMV_CUH_
#define KVCC_CODEGEN_OPS_GEMV_CUH_

#include "ops_common.cuh"

#define KVCC_GEMV_WARPS 8
#define KVCC_GEMV_CHUNK 64

namespace kvcc_gemv {

using kvcc_ops::bf16_t;
using kvcc_ops::f16_t;

__device__ __forceinline__ void mma(f16_t, float c[4], const u32 a[4], u32 b0, u32 b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma(bf16_t, float c[4], const u32 a[4], u32 b0, u32 b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// A weight piece: read once, so it bypasses L1, which then keeps the activations every CTA of
// the SM re-reads. Pieces past `in` (the last chunk of a width that is not a multiple of 64)
// are zero and not read.
__device__ __forceinline__ uint4 load_w(const uint4* p, bool ok) {
  uint4 v = make_uint4(0, 0, 0, 0);
  if (ok) {
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
  }
  return v;
}
__device__ __forceinline__ uint4 load_x(const uint4* p, bool ok) {
  return ok ? __ldg(p) : make_uint4(0, 0, 0, 0);
}
__device__ __forceinline__ u32 word(const uint4& v, int q) {
  return q == 0 ? v.x : q == 1 ? v.y : q == 2 ? v.z : v.w;
}

__device__ __forceinline__ float bias_at(const kvcc::kernels::GemvParams& p, int row) {
  if (p.bias_dtype == 1) return kvcc_ops::to_float(static_cast<const f16_t*>(p.bias)[row]);
  if (p.bias_dtype == 2) return kvcc_ops::to_float(static_cast<const bf16_t*>(p.bias)[row]);
  return static_cast<const float*>(p.bias)[row];
}

template <typename W, int NT, int S, int D>
__device__ __forceinline__ void gemv(const kvcc::kernels::GemvParams& p) {
  __shared__ float red[KVCC_GEMV_WARPS * S * NT * 4 * 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int chunks = (p.in + KVCC_GEMV_CHUNK - 1) / KVCC_GEMV_CHUNK;
  const int cb = warp * chunks / KVCC_GEMV_WARPS;
  const int ce = (warp + 1) * chunks / KVCC_GEMV_WARPS;
  const int row0 = blockIdx.x * S * 16;
  // Running pointers to the lane's first piece of the next chunk to load (a uint4 is 8
  // inputs: a chunk is 8 of them, piece 1 lies 4 past piece 0). Rows past `out` read the last
  // row and tokens past the batch the last token (unconditional loads, no divergence): their
  // sums are never stored.
  const uint4* wp[S][2];
#pragma unroll
  for (int s = 0; s < S; ++s) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = min(row0 + s * 16 + g + 8 * r, p.out - 1);
      wp[s][r] = reinterpret_cast<const uint4*>(static_cast<const u16*>(p.w) + (i64)row * p.in +
                                                cb * KVCC_GEMV_CHUNK + 8 * t);
    }
  }
  const uint4* xp[NT];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    const int tok = min(nt * 8 + g, p.tokens - 1);
    xp[nt] = reinterpret_cast<const uint4*>(static_cast<const u16*>(p.x) + (i64)tok * p.in +
                                            cb * KVCC_GEMV_CHUNK + 8 * t);
  }
  uint4 wb[D][S][2][2], xb[D][NT][2];
  // Input index of the lane's piece 0 in the next chunk to load, for the weights and the
  // activations apart: the first D chunks of weight are loaded before the dependency wait.
  int kw = cb * KVCC_GEMV_CHUNK + 8 * t, kx = kw;
  auto load_weights = [&](int u) {
    const bool ok0 = kw < p.in, ok1 = kw + 32 < p.in;
#pragma unroll
    for (int s = 0; s < S; ++s) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        wb[u][s][r][0] = load_w(wp[s][r], ok0);
        wb[u][s][r][1] = load_w(wp[s][r] + 4, ok1);
        wp[s][r] += 8;
      }
    }
    kw += KVCC_GEMV_CHUNK;
  };
  auto load_acts = [&](int u) {
    const bool ok0 = kx < p.in, ok1 = kx + 32 < p.in;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      xb[u][nt][0] = load_x(xp[nt], ok0);
      xb[u][nt][1] = load_x(xp[nt] + 4, ok1);
      xp[nt] += 8;
    }
    kx += KVCC_GEMV_CHUNK;
  };
#pragma unroll
  for (int u = 0; u < D; ++u) {
    if (cb + u < ce) load_weights(u);
  }
  // The weight does not depend on the previous kernel: while it finishes, this CTA's first
  // chunks are in flight and (p.l2_prefetch) the next ones are on their way into the L2, one
  // 128-byte line (a row's 64 inputs) per row and chunk from the lanes of t == 0.
  if (p.l2_prefetch > 0 && t == 0) {
    const int pe = cb + D + min(p.l2_prefetch, max(ce - cb - D, 0));
#pragma unroll
    for (int s = 0; s < S; ++s) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int row = min(row0 + s * 16 + g + 8 * r, p.out - 1);
        const u16* base = static_cast<const u16*>(p.w) + (i64)row * p.in;
        for (int c = cb + D; c < pe; ++c) {
          asm volatile("prefetch.global.L2 [%0];" ::"l"(base + c * KVCC_GEMV_CHUNK));
        }
      }
    }
  }
  kvcc_ops::grid_dependency_wait();
  kvcc_ops::allow_dependents();
#pragma unroll
  for (int u = 0; u < D; ++u) {
    if (cb + u < ce) load_acts(u);
  }
  float acc[S][NT][4];
#pragma unroll
  for (int s = 0; s < S; ++s) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[s][nt][e] = 0.0f;
    }
  }
  for (int c = cb; c < ce; c += D) {
#pragma unroll
    for (int u = 0; u < D; ++u) {
      if (c + u < ce) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int h = j >> 1, q = 2 * (j & 1);
#pragma unroll
          for (int s = 0; s < S; ++s) {
            const u32 a[4] = {word(wb[u][s][0][h], q), word(wb[u][s][1][h], q),
                              word(wb[u][s][0][h], q + 1), word(wb[u][s][1][h], q + 1)};
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
              mma(W{}, acc[s][nt], a, word(xb[u][nt][h], q), word(xb[u][nt][h], q + 1));
            }
          }
        }
        // Refill this slot with the chunk D ahead.
        if (c + u + D < ce) {
          load_weights(u);
          load_acts(u);
        }
      }
    }
  }
  // red[((warp S + s) NT + nt) 4 + e][lane]; then each output sums its 8 warps.
#pragma unroll
  for (int s = 0; s < S; ++s) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        red[(((warp * S + s) * NT + nt) * 4 + e) * 32 + lane] = acc[s][nt][e];
      }
    }
  }
  __syncthreads();
  constexpr int kOut = S * NT * 4 * 32;
  for (int i = threadIdx.x; i < kOut; i += KVCC_GEMV_WARPS * 32) {
    const int l = i & 31, e = (i >> 5) & 3, nt = (i >> 7) % NT, s = (i >> 7) / NT;
    const int row = row0 + s * 16 + (l >> 2) + 8 * (e >> 1);
    const int tok = nt * 8 + 2 * (l & 3) + (e & 1);
    if (row >= p.out || tok >= p.tokens) continue;
    float v = 0.0f;
#pragma unroll
    for (int w = 0; w < KVCC_GEMV_WARPS; ++w) v += red[w * kOut + i];
    if (p.bias != nullptr) v += bias_at(p, row);
    const i64 at = (i64)tok * p.out + row;
    if (p.y_f16) {
      static_cast<f16_t*>(p.y)[at] = kvcc_ops::from_float<f16_t>(v);
    } else {
      static_cast<float*>(p.y)[at] = v;
    }
  }
}

// A small weight of any shape (a width that is not a multiple of 8, rows that are not 16-byte
// aligned), 1-16 tokens: one warp per output row, its lanes striding over the inputs with
// scalar loads, a warp sum per token. For the linears of tiny models, so that no decode step
// needs cuBLASLt (whose first plan costs ~0.1 s of start-up).
template <typename W>
__device__ __forceinline__ void gemv_small(const kvcc::kernels::GemvParams& p) {
  const int lane = threadIdx.x & 31;
  KVCC_OPS_DEPENDENT_ENTRY();
  const int row = blockIdx.x * KVCC_GEMV_WARPS + (threadIdx.x >> 5);
  if (row >= p.out) return;
  const W* w = static_cast<const W*>(p.w) + (i64)row * p.in;
  const W* x = static_cast<const W*>(p.x);
  float acc[16];
#pragma unroll
  for (int t = 0; t < 16; ++t) acc[t] = 0.0f;
  for (int k = lane; k < p.in; k += 32) {
    const float wv = kvcc_ops::to_float(w[k]);
#pragma unroll
    for (int t = 0; t < 16; ++t) {
      if (t < p.tokens) acc[t] += wv * kvcc_ops::to_float(x[(i64)t * p.in + k]);
    }
  }
#pragma unroll
  for (int t = 0; t < 16; ++t) {
    if (t >= p.tokens) break;
    float v = acc[t];
#pragma unroll
    for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0) {
      if (p.bias != nullptr) v += bias_at(p, row);
      const i64 at = (i64)t * p.out + row;
      if (p.y_f16) {
        static_cast<f16_t*>(p.y)[at] = kvcc_ops::from_float<f16_t>(v);
      } else {
        static_cast<float*>(p.y)[at] = v;
      }
    }
  }
}

}  // namespace kvcc_gemv

// Two CTAs per SM at least (128 registers a thread at most); the entry points of
// codegen/ops_kernels.h GemvVariants(), the ones the H200 sweep kept (docs/performance.md).
// Capping them at 3 or 4 CTAs per SM (85 / 64 registers) spilled.
#define KVCC_GEMV_ENTRY(NT, S, D, NAME)                                                    \
  extern "C" __global__ void __launch_bounds__(KVCC_GEMV_WARPS * 32, 2)                       \
      kvcc_gemv_f16_##NAME(const kvcc::kernels::GemvParams p) {                               \
    kvcc_gemv::gemv<kvcc_ops::f16_t, NT, S, D>(p);                                            \
  }                                                                                           \
  extern "C" __global__ void __launch_bounds__(KVCC_GEMV_WARPS * 32, 2)                       \
      kvcc_gemv_bf16_##NAME(const kvcc::kernels::GemvParams p) {                              \
    kvcc_gemv::gemv<kvcc_ops::bf16_t, NT, S, D>(p);                                           \
  }
KVCC_GEMV_ENTRY(1, 1, 2, n1_s1_d2)
KVCC_GEMV_ENTRY(1, 1, 3, n1_s1_d3)
KVCC_GEMV_ENTRY(2, 1, 3, n2_s1_d3)
#undef KVCC_GEMV_ENTRY

extern "C" __global__ void __launch_bounds__(KVCC_GEMV_WARPS * 32)
    kvcc_gemv_f16_small(const kvcc::kernels::GemvParams p) {
  kvcc_gemv::gemv_small<kvcc_ops::f16_t>(p);
}
extern "C" __global__ void __launch_bounds__(KVCC_GEMV_WARPS * 32)
    kvcc_gemv_bf16_small(const kvcc::kernels::GemvParams p) {
  kvcc_gemv::gemv_small<kvcc_ops::bf16_t>(p);
}

#endif  // KVCC_CODEGEN_OPS_GEMV_CUH_
