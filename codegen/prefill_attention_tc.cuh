// Causal prefill attention over the paged KV cache on the tensor cores (FlashAttention-2 style):
// one CTA of kThreads/32 warps per (query tile, query head, session), 16 or 32 query rows a
// warp (q_tile / warps; with 32 the Q fragments are re-read from shared memory each step so
// that one K/V fragment feeds four MMAs, as FlashAttention-2 does).
// K/V tiles of kKvTile tokens come from the block table by cp.async, double-buffered; quantized
// parts land raw and are dequantized to f16 in shared memory. S = QK^T and O += PV are
// mma.sync m16n8k16 f16 with f32 accumulation, online softmax in registers, the causal mask
// only on the tiles that cross the diagonal. Same arguments as prefill_attention.cuh.
#ifndef KVCC_CODEGEN_PREFILL_ATTENTION_TC_CUH_
#define KVCC_CODEGEN_PREFILL_ATTENTION_TC_CUH_

// Standalone defaults (the rendered source defines them): ResolveDefaults' tiles.
#ifndef KVCC_THREADS
#define KVCC_THREADS 256
#endif
#ifndef KVCC_Q_TILE
#define KVCC_Q_TILE 128
#endif
#ifndef KVCC_KV_TILE
#define KVCC_KV_TILE 64
#endif
#include "kvcc_common.cuh"

namespace kvcc {
namespace tc {
constexpr int kWarps = kThreads / 32;
constexpr int kBM = kQTile;
constexpr int kBN = kKvTile;
// Halves per shared row: 16 bytes of padding put the 8 rows of an ldmatrix in distinct banks.
constexpr int kLd = kHeadDim + 8;
constexpr int kTileBytes = kBN * kLd * 2;
// Query rows a warp owns, in m16 MMA atoms; one atom keeps the Q fragments in registers.
constexpr int kRowsW = kBM / kWarps;
constexpr int kM = kRowsW / 16;
constexpr bool kQInRegs = kM == 1;
static_assert(kBM == kRowsW * kWarps && (kRowsW == 16 || kRowsW == 32), "16 or 32 rows a warp");
static_assert(kHeadDim % 32 == 0 && kBN % 16 == 0, "tile shape");

// One part's (K's or V's) shared memory: f16 parts are copied straight into two f16 tiles;
// quantized ones into two raw stages (plus their online (scale, zero) pairs) and are
// dequantized into one f16 tile. kernel_spec.cc PrefillTcSharedBytes mirrors these sizes.
template <typename P>
struct PartSmem {
  static constexpr bool kDirect = P::kBits == 16;
  static constexpr int kRawBytes = kBN * P::kRowBytes;
  static constexpr int kParamBytes = P::kOnline ? kBN * 4 : 0;
  static constexpr int kBytes =
      kDirect ? 2 * kTileBytes : kTileBytes + 2 * (kRawBytes + kParamBytes);
  u8* base;
  __device__ u16* tile(int stage) const {
    return reinterpret_cast<u16*>(base + (kDirect ? stage * kTileBytes : 0));
  }
  __device__ u8* raw(int stage) const { return base + kTileBytes + stage * kRawBytes; }
  __device__ u16* params(int stage) const {
    return reinterpret_cast<u16*>(base + kTileBytes + 2 * kRawBytes + stage * kParamBytes);
  }
};
constexpr int kSmemBytes = kBM * kLd * 2 + PartSmem<KPart>::kBytes + PartSmem<VPart>::kBytes;

// The builtin rather than a cvta in inline asm: the compiler sees the arithmetic, so every
// ldmatrix address becomes one per-lane register plus an immediate offset instead of a
// register of its own hoisted out of the loop (those spilled at 32 rows a warp).
__device__ __forceinline__ u32 smem_addr(const void* p) {
  return (u32)__cvta_generic_to_shared(p);
}
// 16 bytes global -> shared; src_bytes 0 zero-fills (rows past the cached length).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_addr(dst)), "l"(src),
               "r"(src_bytes));
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(smem_addr(dst)), "l"(src),
               "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
__device__ __forceinline__ void cp_async_wait1() { asm volatile("cp.async.wait_group 1;"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;"); }

__device__ __forceinline__ void ldmatrix_x4(u32 (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(u32 (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void mma16816(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// 2^x with the MUFU alone (flushing results below 2^-126 to 0; exp2f would add the
// range handling of subnormal results around it). ex2(-inf) = +0.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
// Two floats as f16x2, `lo` in the low half (the lower column).
__device__ __forceinline__ u32 pack_half2(float lo, float hi) {
  u32 r;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

// Queues the copy of cache tokens [kv0, kv0 + kBN) of part P into `stage` (tokens at or past
// kv_end zero-filled, their block never looked up).
template <typename P>
__device__ __forceinline__ void issue_tile(const PartSmem<P>& s, const u8* cache, const u16* params,
                                           const int* table, int kvh, int kv0, int kv_end,
                                           int stage) {
  constexpr int kChunks = P::kRowBytes / 16;
  const int tid = threadIdx.x;
  if constexpr (kBlockSize % kBN == 0 && kThreads % kChunks == 0) {
    // The tile lies in one cache block: one table read, and each thread copies one fixed
    // 16-byte column of every (kThreads / kChunks)-th row.
    constexpr int kRowStep = kThreads / kChunks;
    const int ch = tid % kChunks;
    const u8* src = cache;
    if (kv0 < kv_end) src += P::row_offset(table[kv0 / kBlockSize], kvh, kv0 % kBlockSize) + ch * 16;
    u8* dst = PartSmem<P>::kDirect ? reinterpret_cast<u8*>(s.tile(stage)) + ch * 16
                                   : s.raw(stage) + ch * 16;
    constexpr int kDstRow = PartSmem<P>::kDirect ? kLd * 2 : P::kRowBytes;
#pragma unroll
    for (int r = tid / kChunks; r < kBN; r += kRowStep) {
      const bool ok = kv0 + r < kv_end;
      cp_async16(dst + r * kDstRow, ok ? src + r * P::kRowBytes : cache, ok ? 16 : 0);
    }
  } else {
#pragma unroll 1
    for (int i = 0; i < (kBN * kChunks + kThreads - 1) / kThreads; ++i) {
      const int c = tid + i * kThreads;
      if ((kBN * kChunks) % kThreads != 0 && c >= kBN * kChunks) break;
      const int r = c / kChunks, ch = c % kChunks, t = kv0 + r;
      const bool ok = t < kv_end;
      const u8* src = cache;
      if (ok) src += P::row_offset(table[t / kBlockSize], kvh, t % kBlockSize) + ch * 16;
      u8* dst = PartSmem<P>::kDirect
                    ? reinterpret_cast<u8*>(s.tile(stage)) + r * kLd * 2 + ch * 16
                    : s.raw(stage) + r * P::kRowBytes + ch * 16;
      cp_async16(dst, src, ok ? 16 : 0);
    }
  }
  if constexpr (P::kOnline) {
    for (int r = tid; r < kBN; r += kThreads) {
      const int t = kv0 + r;
      const bool ok = t < kv_end;
      const u16* src = params;
      if (ok) src += param_index(table[t / kBlockSize], kvh, t % kBlockSize);
      cp_async4(s.params(stage) + 2 * r, src, ok ? 4 : 0);
    }
  }
}

// Raw stage -> the f16 tile, 8 elements (one 16-byte store) at a time. Calibrated parts are
// stored as their codes (integers and e4m3 values are exact in f16): their scale and zero are
// applied outside the MMAs (see prefill_attention_tc), so this pass is a format conversion;
// online parts get their per-token (scale, zero) here by fp32 FMA, one rounding to f16.
template <typename P>
__device__ __forceinline__ void dequant_tile(const PartSmem<P>& s, int stage) {
  if constexpr (!PartSmem<P>::kDirect) {
    constexpr int kVB = P::kBits;  // bytes holding 8 elements
    constexpr int kUnits = kBN * kHeadDim / 8;
    const u8* raw = s.raw(stage);
    u16* tile = s.tile(0);
#pragma unroll 2
    for (int i = 0; i < (kUnits + kThreads - 1) / kThreads; ++i) {
      const int u = threadIdx.x + i * kThreads;
      if (kUnits % kThreads != 0 && u >= kUnits) break;
      const int r = u / (kHeadDim / 8), d0 = (u % (kHeadDim / 8)) * 8;
      const u8* src = raw + r * P::kRowBytes + d0 * P::kBits / 8;
      Raw<kVB> w;
      if constexpr (kVB == 8) {
        const uint2 x = *reinterpret_cast<const uint2*>(src);
        w.w[0] = x.x;
        w.w[1] = x.y;
      } else {
        w.w[0] = *reinterpret_cast<const u32*>(src);
      }
      uint4 o;
      if constexpr (P::kCalibrated && P::kBits == 8 && !P::kFp8) {
        // Signed bytes + 128 into the mantissa of f16 1024 (0x64XX = 1024 + XX), less 1152:
        // the code exactly, two elements per PRMT + HSUB2.
        u32 h[4];
#pragma unroll
        for (int k = 0; k < 2; ++k) {
          const u32 x = w.w[k] ^ 0x80808080u;
          h[2 * k] = __byte_perm(x, 0x64646464u, 0x5140);
          h[2 * k + 1] = __byte_perm(x, 0x64646464u, 0x7362);
        }
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          asm("sub.f16x2 %0, %1, %2;" : "=r"(h[k]) : "r"(h[k]), "r"(0x64806480u));
        }
        o = make_uint4(h[0], h[1], h[2], h[3]);
      } else {
        float f[8];
        Unpack<kVB, P>::run(w, f);
        if constexpr (P::kOnline) {
          const u32 sz = reinterpret_cast<const u32*>(s.params(stage))[r];
          const float scale = half_to_float((u16)sz), zp = half_to_float((u16)(sz >> 16));
#pragma unroll
          for (int i = 0; i < 8; ++i) f[i] = fmaf(f[i], scale, zp);
        }
        o.x = pack_half2(f[0], f[1]);
        o.y = pack_half2(f[2], f[3]);
        o.z = pack_half2(f[4], f[5]);
        o.w = pack_half2(f[6], f[7]);
      }
      *reinterpret_cast<uint4*>(tile + r * kLd + d0) = o;
    }
  }
}

__device__ __forceinline__ void prefill_attention_tc(
    const io_t* __restrict__ q, const u8* __restrict__ k_cache, const u8* __restrict__ v_cache,
    const u16* __restrict__ k_params, const u16* __restrict__ v_params,
    const float* __restrict__ k_zp, const float* __restrict__ k_scale,
    const float* __restrict__ v_zp, const float* __restrict__ v_scale,
    const int* __restrict__ block_tables, int max_blocks, const int* __restrict__ seq_lens,
    const int* __restrict__ q_start, float softmax_scale, io_t* __restrict__ out) {
  extern __shared__ __align__(16) u8 smem[];
  u32 dyn_bytes;
  asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dyn_bytes));
  if (dyn_bytes < (u32)kSmemBytes) return;  // launched without the space: outputs untouched
  // The longest (last) tiles first, so the causal triangle's tail does not run alone.
  const int tile0 = (gridDim.x - 1 - blockIdx.x) * kBM, h = blockIdx.y, b = blockIdx.z;
  const int kvh = h / kGroup;
  const int q0 = q_start[b], qlen = q_start[b + 1] - q0;
  if (tile0 >= qlen) return;
  const int seq_len = seq_lens[b];
  const int first_pos = seq_len - qlen;
  const int rows = min(kBM, qlen - tile0);
  const int* table = block_tables + (i64)b * max_blocks;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;

  u16* sq = reinterpret_cast<u16*>(smem);
  const PartSmem<KPart> ks{smem + kBM * kLd * 2};
  const PartSmem<VPart> vs{smem + kBM * kLd * 2 + PartSmem<KPart>::kBytes};

  const int kv_end = min(seq_len, first_pos + tile0 + rows);
  const int tiles = (kv_end + kBN - 1) / kBN;
  issue_tile<KPart>(ks, k_cache, k_params, table, kvh, 0, kv_end, 0);
  issue_tile<VPart>(vs, v_cache, v_params, table, kvh, 0, kv_end, 0);
  cp_async_commit();

  // Q tile to shared as f16 (rows past the session zero), then into A fragments. A calibrated
  // K enters the MMAs as its codes c: K = c * scale + zp, and q.K = sum_d (q_d scale_d) c_d +
  // sum_d q_d zp_d, whose second term is the same for every token of the row and so leaves the
  // softmax unchanged. A per-channel scale is folded into Q here, a single one into sl2 below.
  for (int u = tid; u < kBM * kHeadDim / 8; u += kThreads) {
    const int r = u / (kHeadDim / 8), d0 = (u % (kHeadDim / 8)) * 8;
    uint4 o = {0u, 0u, 0u, 0u};
    if (r < rows) {
      const io_t* src = q + ((i64)(q0 + tile0 + r) * kHeads + h) * kHeadDim + d0;
      if constexpr (KPart::kCalibrated && KPart::kPerChannel) {
        float x[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) x[i] = load_io(src + i) * k_scale[KPart::param(kvh, d0 + i)];
        o.x = pack_half2(x[0], x[1]);
        o.y = pack_half2(x[2], x[3]);
        o.z = pack_half2(x[4], x[5]);
        o.w = pack_half2(x[6], x[7]);
      } else {
#if KVCC_IO_F16
        o = *reinterpret_cast<const uint4*>(src);
#else
        const float4 x = reinterpret_cast<const float4*>(src)[0];
        const float4 y = reinterpret_cast<const float4*>(src)[1];
        o.x = pack_half2(x.x, x.y);
        o.y = pack_half2(x.z, x.w);
        o.z = pack_half2(y.x, y.y);
        o.w = pack_half2(y.z, y.w);
#endif
      }
    }
    *reinterpret_cast<uint4*>(sq + r * kLd + d0) = o;
  }
  __syncthreads();
  constexpr int kKSteps = kHeadDim / 16;
  const int wrow0 = warp * kRowsW;  // the warp's first row in the tile
  u32 qf[kQInRegs ? kKSteps : 1][4];
  if constexpr (kQInRegs) {
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
      ldmatrix_x4(qf[kk], sq + (wrow0 + lane % 16) * kLd + kk * 16 + (lane / 16) * 8);
    }
  }

  constexpr int kNB = kBN / 8;       // S n-blocks (8 tokens)
  constexpr int kDB = kHeadDim / 8;  // O n-blocks (8 channels)
  constexpr int kR = 2 * kM;         // rows a thread holds: g and g + 8 of each atom
  float o_acc[kM][kDB][4];
#pragma unroll
  for (int mi = 0; mi < kM; ++mi) {
#pragma unroll
    for (int i = 0; i < kDB; ++i) {
      o_acc[mi][i][0] = o_acc[mi][i][1] = o_acc[mi][i][2] = o_acc[mi][i][3] = 0.f;
    }
  }
  const float kNegInf = __int_as_float(0xff800000);
  float m_scaled[kR], l[kR];  // per row: running max of score * sl2, running sum
#pragma unroll
  for (int r = 0; r < kR; ++r) m_scaled[r] = kNegInf, l[r] = 0.f;
  float sl2 = softmax_scale * kLog2e;
  if constexpr (KPart::kCalibrated && !KPart::kPerChannel) sl2 *= k_scale[KPart::param(kvh, 0)];
  // Positions of the warp's first and last rows and of this thread's row g of atom 0.
  const int warp_pos0 = first_pos + tile0 + wrow0;
  const int warp_pos1 = warp_pos0 + kRowsW - 1;
  const int row_pos0 = warp_pos0 + lane / 4;

  for (int j = 0; j < tiles; ++j) {
    const int kv0 = j * kBN;
    if (j + 1 < tiles) {
      issue_tile<KPart>(ks, k_cache, k_params, table, kvh, kv0 + kBN, kv_end, (j + 1) & 1);
      issue_tile<VPart>(vs, v_cache, v_params, table, kvh, kv0 + kBN, kv_end, (j + 1) & 1);
    }
    cp_async_commit();
    cp_async_wait1();
    __syncthreads();
    if constexpr (!PartSmem<KPart>::kDirect || !PartSmem<VPart>::kDirect) {
      dequant_tile<KPart>(ks, j & 1);
      dequant_tile<VPart>(vs, j & 1);
      __syncthreads();
    }
    // A tile wholly past the warp's rows would add exact zeros with a correction of exactly 1
    // (see below): skipping it leaves the same bits and saves the causal triangle's waste
    // (and warps whose rows are all past the session's end skip everything).
    if (kv0 <= warp_pos1 && wrow0 < rows) {
      const u16* sk = ks.tile(j & 1);
      const u16* sv = vs.tile(j & 1);

      float s[kM][kNB][4];
#pragma unroll
      for (int mi = 0; mi < kM; ++mi) {
#pragma unroll
        for (int nb = 0; nb < kNB; ++nb) s[mi][nb][0] = s[mi][nb][1] = s[mi][nb][2] = s[mi][nb][3] = 0.f;
      }
      if constexpr (kQInRegs) {
#pragma unroll
        for (int kc = 0; kc < kHeadDim / 32; ++kc) {
#pragma unroll
          for (int nb = 0; nb < kNB; ++nb) {
            u32 bf[4];
            ldmatrix_x4(bf, sk + (nb * 8 + lane % 8) * kLd + kc * 32 + (lane / 8) * 8);
            mma16816(s[0][nb], qf[2 * kc], bf[0], bf[1]);
            mma16816(s[0][nb], qf[2 * kc + 1], bf[2], bf[3]);
          }
        }
      } else {
        // One k-step at a time: Q's A fragments of every atom from shared memory, then each
        // ldmatrix of K (two n-blocks of 8 tokens x 16 channels) feeds 2 x kM MMAs.
#pragma unroll
        for (int kk = 0; kk < kKSteps; ++kk) {
          u32 qa[kM][4];
#pragma unroll
          for (int mi = 0; mi < kM; ++mi) {
            ldmatrix_x4(qa[mi], sq + (wrow0 + mi * 16 + lane % 16) * kLd + kk * 16 + (lane / 16) * 8);
          }
#pragma unroll
          for (int nb = 0; nb < kNB; nb += 2) {
            u32 bf[4];
            ldmatrix_x4(bf, sk + (nb * 8 + (lane / 16) * 8 + lane % 8) * kLd + kk * 16 +
                                ((lane / 8) % 2) * 8);
#pragma unroll
            for (int mi = 0; mi < kM; ++mi) {
              mma16816(s[mi][nb], qa[mi], bf[0], bf[1]);
              mma16816(s[mi][nb + 1], qa[mi], bf[2], bf[3]);
            }
          }
        }
      }
      if (kv0 + kBN - 1 > warp_pos0) {  // the tile crosses the diagonal of the warp's rows
#pragma unroll
        for (int mi = 0; mi < kM; ++mi) {
#pragma unroll
          for (int nb = 0; nb < kNB; ++nb) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              const int t = kv0 + nb * 8 + 2 * (lane % 4) + (i & 1);
              if (t > row_pos0 + mi * 16 + (i >= 2 ? 8 : 0)) s[mi][nb][i] = kNegInf;
            }
          }
        }
      }
      float corr[kR];
#pragma unroll
      for (int r = 0; r < kR; ++r) {
        const int mi = r / 2, hr = r % 2;
        float mx = kNegInf;
#pragma unroll
        for (int nb = 0; nb < kNB; ++nb) {
          mx = fmaxf(mx, fmaxf(s[mi][nb][2 * hr], s[mi][nb][2 * hr + 1]));
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        // Only the scaled maximum is kept: rounding is monotonic, so max(old, fl(mx * sl2)) is
        // fl(max of the raw scores * sl2), and an unchanged max gives a correction of exactly
        // 1: tiles wholly past a row leave its accumulators bit for bit as they were.
        // __fmul_rn: a product contracted into the subtraction below would leave its rounding
        // error there.
        const float m_new = fmaxf(m_scaled[r], __fmul_rn(mx, sl2));
        const float ms = m_new == kNegInf ? 0.f : m_new;
        corr[r] = fast_exp2(m_scaled[r] - ms);
        m_scaled[r] = m_new;
        float sum = 0.f;
#pragma unroll
        for (int nb = 0; nb < kNB; ++nb) {
          s[mi][nb][2 * hr] = fast_exp2(fmaf(s[mi][nb][2 * hr], sl2, -ms));
          s[mi][nb][2 * hr + 1] = fast_exp2(fmaf(s[mi][nb][2 * hr + 1], sl2, -ms));
          sum += s[mi][nb][2 * hr] + s[mi][nb][2 * hr + 1];
        }
        l[r] = fmaf(l[r], corr[r], sum);
      }
#pragma unroll
      for (int mi = 0; mi < kM; ++mi) {
#pragma unroll
        for (int db = 0; db < kDB; ++db) {
          o_acc[mi][db][0] *= corr[2 * mi];
          o_acc[mi][db][1] *= corr[2 * mi];
          o_acc[mi][db][2] *= corr[2 * mi + 1];
          o_acc[mi][db][3] *= corr[2 * mi + 1];
        }
      }
#pragma unroll
      for (int kk = 0; kk < kBN / 16; ++kk) {
        // The S accumulators of two n-blocks are exactly the A fragment of one k-step.
        u32 pa[kM][4];
#pragma unroll
        for (int mi = 0; mi < kM; ++mi) {
          pa[mi][0] = pack_half2(s[mi][2 * kk][0], s[mi][2 * kk][1]);
          pa[mi][1] = pack_half2(s[mi][2 * kk][2], s[mi][2 * kk][3]);
          pa[mi][2] = pack_half2(s[mi][2 * kk + 1][0], s[mi][2 * kk + 1][1]);
          pa[mi][3] = pack_half2(s[mi][2 * kk + 1][2], s[mi][2 * kk + 1][3]);
        }
#pragma unroll
        for (int d2 = 0; d2 < kHeadDim / 16; ++d2) {
          u32 bf[4];
          ldmatrix_x4_trans(bf, sv + (kk * 16 + lane % 16) * kLd + d2 * 16 + (lane / 16) * 8);
#pragma unroll
          for (int mi = 0; mi < kM; ++mi) {
            mma16816(o_acc[mi][2 * d2], pa[mi], bf[0], bf[1]);
            mma16816(o_acc[mi][2 * d2 + 1], pa[mi], bf[2], bf[3]);
          }
        }
      }
    }
    __syncthreads();
  }
  cp_async_wait_all();  // no copy may outlive the CTA (none is pending unless tiles == 0)

#pragma unroll
  for (int r = 0; r < kR; ++r) {
    const int mi = r / 2, hr = r % 2;
    float sum = l[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const float inv = sum > 0.f ? 1.f / sum : 0.f;
    // A calibrated V entered the MMAs as its codes: O = scale * (sum_t p_t c_t) / l + zp (the
    // weights summing to 1).
    const float has = sum > 0.f ? 1.f : 0.f;
    const int row = wrow0 + mi * 16 + lane / 4 + hr * 8;
    if (row < rows) {
      io_t* dst = out + ((i64)(q0 + tile0 + row) * kHeads + h) * kHeadDim + 2 * (lane % 4);
#pragma unroll
      for (int db = 0; db < kDB; ++db) {
        float x = o_acc[mi][db][2 * hr] * inv, y = o_acc[mi][db][2 * hr + 1] * inv;
        if constexpr (VPart::kCalibrated) {
          const int c = db * 8 + 2 * (lane % 4);
          const int i0 = VPart::param(kvh, c), i1 = VPart::param(kvh, c + 1);
          x = fmaf(x, v_scale[i0], v_zp[i0] * has);
          y = fmaf(y, v_scale[i1], v_zp[i1] * has);
        }
#if KVCC_IO_F16
        *reinterpret_cast<u32*>(dst + db * 8) = pack_half2(x, y);
#else
        *reinterpret_cast<float2*>(dst + db * 8) = make_float2(x, y);
#endif
      }
    }
  }
}
}  // namespace tc
}  // namespace kvcc

extern "C" __global__ void __launch_bounds__(kvcc_spec::kThreads, kvcc_spec::kMinBlocks)
    kvcc_prefill_attention_tc(const kvcc::kernels::PrefillAttentionParams p) {
  kvcc::tc::prefill_attention_tc(static_cast<const kvcc::io_t*>(p.q), p.cache.k, p.cache.v,
                                 p.cache.k_params, p.cache.v_params, p.cache.k_zp,
                                 p.cache.k_scale, p.cache.v_zp, p.cache.v_scale, p.block_tables,
                                 p.max_blocks, p.seq_lens, p.q_start, p.softmax_scale,
                                 static_cast<kvcc::io_t*>(p.out));
}

#endif  // KVCC_CODEGEN_PREFILL_ATTENTION_TC_CUH_
