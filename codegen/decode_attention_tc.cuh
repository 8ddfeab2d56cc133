// Decode attention on tensor cores for grouped-query attention: the kGroup query heads of one KV
// head are the rows of a 16-row mma.sync.m16n8k16 tile, so each K/V block is read and
// dequantized once per KV head and feeds every head of the group with matrix instructions.
// One CTA per (kv head, session, split); each warp owns every kWarps-th chunk of 16 tokens and
// streams it through a cp.async pipeline of kStages shared-memory stages (rows padded by 16
// bytes so ldmatrix is conflict-free). Stored values become f16 exactly in registers (int8:
// PRMT into 0x64xx + one subtraction; int4: LOP3 into 0x6400 halves; fp8 e4m3: a shift and a
// mask, giving value/256, the 2^8 folded into the scale; f16 as is), so S = q.code is exact in
// f16 products with f32 accumulation and the scheme's scale and zero are applied to S in f32,
// as in decode_attention.cuh. The dot product does not care about the order of the dims, so
// each thread takes the bytes ldmatrix hands it and q is loaded in the same permuted order;
// for PV, V is read with ldmatrix.trans and the output dims are permuted back on the store.
// P is rounded to f16 for the PV product (online V: p * scale, the zero added as p * zero in
// f32). Per-channel parts and f32 activations use decode_attention.cuh
// (codegen/decode_attention_tc.h says when this kernel applies). Same arguments, partials and
// merge as decode_attention.cuh.
#ifndef KVCC_CODEGEN_DECODE_ATTENTION_TC_CUH_
#define KVCC_CODEGEN_DECODE_ATTENTION_TC_CUH_

#include "decode_combine.cuh"
#include "kvcc_common.cuh"

namespace kvcc {
namespace tc {
constexpr int kWarps = kThreads / 32;
constexpr int kChunk = 16;  // tokens per warp per step: the k of the PV mma
constexpr bool kTwoRowHalves = kGroup > 8;  // rows 8-15 of the tile hold heads
constexpr int kKSeg = KPart::kRowBytes / 16;  // 16-byte segments per K row
constexpr int kVSeg = VPart::kRowBytes / 16;
constexpr int kKPitch = KPart::kRowBytes + 16;  // padded smem row: 8 rows hit 8 bank groups
constexpr int kVPitch = VPart::kRowBytes + 16;
constexpr int kKSteps = kHeadDim / 16;  // k steps of the QK^T product
constexpr int kNTiles = kHeadDim / 8;   // n tiles of the PV product
constexpr int kStageBytes = kChunk * (kKPitch + kVPitch) + 2 * kChunk * 4;
// The spec's unroll is the pipeline depth, capped by the 48 KiB of static shared memory
// (codegen/decode_attention_tc.cc picks a depth that fits).
constexpr int kMaxStages = 48 * 1024 / (kWarps * kStageBytes);
constexpr int kStages = kUnroll < kMaxStages ? kUnroll : kMaxStages > 1 ? kMaxStages : 1;
constexpr int kPipeBytes = kWarps * kStages * kStageBytes;
constexpr int kEpiBytes = kWarps * kGroup * (kHeadDim + 2) * 4;
constexpr int kSmemBytes = kPipeBytes > kEpiBytes ? kPipeBytes : kEpiBytes;
static_assert(kHeadDim == 64 || kHeadDim == 128, "head_dim 64 or 128");
static_assert(kBlockSize % kChunk == 0, "a 16-token chunk must lie in one cache block");
static_assert(kGroup <= 16, "at most 16 query heads per kv head");
static_assert(!KPart::kPerChannel && !VPart::kPerChannel, "per-channel parts: decode_attention");
static_assert(kKSeg % 2 == 0 && kVSeg % 2 == 0, "rows of an even number of 16-byte segments");
static_assert(kSmemBytes <= 48 * 1024, "static shared memory");

__device__ __forceinline__ u32 smem_addr(const void* p) {
  return (u32)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ void cp_async16(u32 dst, const void* src, bool valid) {
  // src-size 0 zero-fills: tokens past the end read as zeros (their V must not be NaN).
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
__device__ __forceinline__ void ldsm_x4(u32 addr, u32 (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_trans(u32 addr, u32 (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
// d = a * b + d, f16 inputs, f32 accumulation. Without kTwoRowHalves rows 8-15 of a are zero
// and d[2], d[3] stay zero: keeping them as real accumulators costs registers but saves the
// moves that building a {d0, d1, 0, 0} operand quad per mma took (12% of the loop's
// instructions at int8, 168 instead of 158 registers, the same 3 CTAs per SM).
__device__ __forceinline__ void mma(float (&d)[4], const u32 (&a)[4], u32 b0, u32 b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ u32 hsub2(u32 a, u32 b) {
  u32 d;
  asm("sub.rn.f16x2 %0, %1, %2;\n" : "=r"(d) : "r"(a), "r"(b));
  return d;
}
__device__ __forceinline__ u32 hfma2(u32 a, u32 b, u32 c) {
  u32 d;
  asm("fma.rn.f16x2 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}
__device__ __forceinline__ u32 pack_half2(float lo, float hi) {
  return (u32)float_to_half(lo) | ((u32)float_to_half(hi) << 16);
}

// Two stored values (the bytes `sel` picks, as PRMT selectors for the int8 and fp8 forms) of
// a 32-bit word -> f16x2, exactly: integer codes as themselves, fp8 as value / 256.
template <typename P>
__device__ __forceinline__ u32 byte_pair(u32 w, u32 sel_magic, u32 sel_zero) {
  if constexpr (P::kFp8) {
    const u32 x = __byte_perm(w, 0u, sel_zero);  // each half: the byte in its high 8 bits
    return ((x >> 1) & 0x3f803f80u) | (x & 0x80008000u);
  } else {
    constexpr u32 kFlip = P::kSigned ? 0x80808080u : 0u;
    constexpr u32 kBias = P::kSigned ? 0x64806480u : 0x64006400u;  // 1152 or 1024
    return hsub2(__byte_perm(w ^ kFlip, 0x64646464u, sel_magic), kBias);
  }
}
// Nibbles 0 and 4 (q = 0), 1 and 5 (q = 1), 2 and 6 (q = 2) or 3 and 7 (q = 3) of a word ->
// f16x2 codes, exactly: masked into the mantissa of 1024 (times 16 for odd q).
template <typename P>
__device__ __forceinline__ u32 nibble_pair(u32 w, int q) {
  constexpr u32 kFlip = P::kSigned ? 0x88888888u : 0u;
  w ^= kFlip;
  if (q >= 2) w >>= 8;
  if (q % 2 == 0) {
    constexpr u32 kBias = P::kSigned ? 0x64086408u : 0x64006400u;  // 1032 or 1024
    return hsub2((w & 0x000f000fu) | 0x64006400u, kBias);
  }
  constexpr u32 kAdd = P::kSigned ? 0xd480d480u : 0xd400d400u;  // -72 or -64
  return hfma2((w & 0x00f000f0u) | 0x64006400u, 0x2c002c00u, kAdd);  // x/16 - 64 (- 8)
}

// K as the B operand of S = Q K^T: raw[nt][seg] is the word ldmatrix gave this thread of the
// 16-byte segment `seg` of token nt * 8 + lane / 4. Returns the two f16x2 registers of k step ks.
__device__ __forceinline__ void k_frag(const u32 (&raw)[2][kKSeg], int nt, int ks, u32& b0,
                                       u32& b1) {
  if constexpr (KPart::kBits == 16) {
    b0 = raw[nt][2 * ks];
    b1 = raw[nt][2 * ks + 1];
  } else if constexpr (KPart::kBits == 8) {
    b0 = byte_pair<KPart>(raw[nt][ks], 0x4140, 0x1404);
    b1 = byte_pair<KPart>(raw[nt][ks], 0x4342, 0x3424);
  } else {
    b0 = nibble_pair<KPart>(raw[nt][ks / 2], (ks % 2) * 2);
    b1 = nibble_pair<KPart>(raw[nt][ks / 2], (ks % 2) * 2 + 1);
  }
}
// The head dim that k_frag's element r (b0 low, b0 high, b1 low, b1 high) of k step ks holds
// for the thread with lane % 4 == c: q's A fragment is loaded in this order.
__device__ __forceinline__ int k_dim(int ks, int c, int r) {
  if constexpr (KPart::kBits == 16) return ks * 16 + (r >= 2 ? 8 : 0) + 2 * c + (r & 1);
  if constexpr (KPart::kBits == 8) return ks * 16 + 4 * c + r;
  // Nibble i of the thread's word is dim seg * 32 + 8c + i; pairs (0,4) (1,5) | (2,6) (3,7).
  const int nib = (ks % 2) * 2 + (r >> 1) + (r & 1) * 4;
  return (ks / 2) * 32 + 8 * c + nib;
}
// V as the B operand of O = P V: w[half] is the ldmatrix.trans word of 16-byte segment
// (nt's segment) for tokens 2c, 2c+1 (half 0) and 8+2c, 8+2c+1 (half 1).
constexpr int kVTilesPerSeg = 16 * 8 / VPart::kBits / 8;  // f16 1, 8-bit 2, int4 4
__device__ __forceinline__ u32 v_frag(u32 w, int sub) {
  if constexpr (VPart::kBits == 16) {
    return w;
  } else if constexpr (VPart::kBits == 8) {
    return sub == 0 ? byte_pair<VPart>(w, 0x4240, 0x2404) : byte_pair<VPart>(w, 0x4341, 0x3414);
  } else {
    return nibble_pair<VPart>(w, sub);
  }
}
// The head dim of column n of PV n tile `sub` of segment seg.
__device__ __forceinline__ int v_dim(int seg, int sub, int n) {
  return seg * (16 * 8 / VPart::kBits) + n * kVTilesPerSeg + sub;
}
// fp8 codes come out as value / 256: the scale takes the 256.
constexpr float kKUnit = KPart::kFp8 ? 256.f : 1.f;
constexpr float kVUnit = VPart::kFp8 ? 256.f : 1.f;
}  // namespace tc

__device__ __forceinline__ void decode_attention_tc(
    const io_t* __restrict__ q, const u8* __restrict__ k_cache, const u8* __restrict__ v_cache,
    const u16* __restrict__ k_params, const u16* __restrict__ v_params,
    const float* __restrict__ k_zp, const float* __restrict__ k_scale,
    const float* __restrict__ v_zp, const float* __restrict__ v_scale,
    const int* __restrict__ block_tables, int max_blocks, const int* __restrict__ seq_lens,
    float softmax_scale, int tokens_per_split, io_t* __restrict__ out,
    float* __restrict__ partial_out, float* __restrict__ partial_ml) {
  using namespace tc;
  const int kvh = blockIdx.x, b = blockIdx.y, split = blockIdx.z, nsplit = gridDim.z;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, c = lane % 4;
  const int seq_len = seq_lens[b];
  const int start = split * tokens_per_split;
  const int end = min(seq_len, start + tokens_per_split);
  const int* table = block_tables + (i64)b * max_blocks;
  const int nchunks = end > start ? (end - start + kChunk - 1) / kChunk : 0;

  __shared__ __align__(16) u8 smem[kSmemBytes];
  u8* const my_stages = smem + warp * kStages * kStageBytes;

  // The cache block of this warp's i-th chunk. Read one chunk ahead of its copies, so a
  // table load never stalls the issue of the copies.
  auto block_of = [&](int i) {
    const int ci = warp + i * kWarps;
    return ci < nchunks ? __ldg(table + (start + ci * kChunk) / kBlockSize) : 0;
  };
  int next_blk = block_of(0);
  // Issues the copies of this warp's i-th chunk (i = 0, 1, 2, ... in turn) into stage
  // i % kStages (an empty group when there is no such chunk, so the wait counts stay uniform).
  auto issue = [&](int i) {
    const int ci = warp + i * kWarps;
    const int blk = next_blk;
    next_blk = block_of(i + 1);
    if (ci < nchunks) {
      const int t0 = start + ci * kChunk;
      const int slot0 = t0 % kBlockSize;
      u8* st = my_stages + (i % kStages) * kStageBytes;
      const u8* ksrc = k_cache + KPart::row_offset(blk, kvh, slot0);
      const u8* vsrc = v_cache + VPart::row_offset(blk, kvh, slot0);
#pragma unroll
      for (int p = lane; p < kChunk * kKSeg; p += 32) {
        const int row = p / kKSeg, seg = p % kKSeg;
        cp_async16(smem_addr(st + row * kKPitch + seg * 16), ksrc + p * 16, t0 + row < end);
      }
      u8* vst = st + kChunk * kKPitch;
#pragma unroll
      for (int p = lane; p < kChunk * kVSeg; p += 32) {
        const int row = p / kVSeg, seg = p % kVSeg;
        cp_async16(smem_addr(vst + row * kVPitch + seg * 16), vsrc + p * 16, t0 + row < end);
      }
      // Online (scale, zero) pairs: 16 tokens x 4 bytes per part, four 16-byte pieces each.
      u8* pst = vst + kChunk * kVPitch;
      const i64 pi = param_index(blk, kvh, slot0);
      if constexpr (KPart::kOnline) {
        if (lane < 4) {
          cp_async16(smem_addr(pst + lane * 16), k_params + pi + lane * 8, t0 + lane * 4 < end);
        }
      }
      if constexpr (VPart::kOnline) {
        if (lane < 4) {
          cp_async16(smem_addr(pst + kChunk * 4 + lane * 16), v_params + pi + lane * 8,
                     t0 + lane * 4 < end);
        }
      }
    }
    cp_commit();
  };
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) issue(s);

  // q as the A operand, in k_dim's order (rows g and g + 8 of the tile, unused rows zero),
  // exactly as stored in f16; the softmax scale is applied to S in f32.
  u32 qa[kKSteps][4];
  float qsum[2] = {0.f, 0.f};
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = g + 8 * h;
    const bool used = row < kGroup;
    const io_t* qrow = q + ((i64)b * kHeads + kvh * kGroup + (used ? row : 0)) * kHeadDim;
#pragma unroll
    for (int ks = 0; ks < kKSteps; ++ks) {
      float v[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        v[r] = used ? half_to_float(float_to_half(load_io(qrow + k_dim(ks, c, r)))) : 0.f;
        qsum[h] += v[r];
      }
      qa[ks][h] = pack_half2(v[0], v[1]);
      qa[ks][2 + h] = pack_half2(v[2], v[3]);
    }
    qsum[h] += __shfl_xor_sync(0xffffffffu, qsum[h], 1);
    qsum[h] += __shfl_xor_sync(0xffffffffu, qsum[h], 2);
  }
  const float qscale = softmax_scale * kLog2e;
  float ks_c = kKUnit, kz_c = 0.f, vs_c = kVUnit, vz_c = 0.f;
  if constexpr (KPart::kCalibrated) {
    ks_c = k_scale[KPart::param(kvh, 0)] * kKUnit;
    kz_c = k_zp[KPart::param(kvh, 0)];
  }
  if constexpr (VPart::kCalibrated) {
    vs_c = v_scale[VPart::param(kvh, 0)] * kVUnit;
    vz_c = v_zp[VPart::param(kvh, 0)];
  }

  float m[2] = {-1e30f, -1e30f}, l[2] = {0.f, 0.f}, zacc[2] = {0.f, 0.f};
  float acc[kNTiles][4];
#pragma unroll
  for (int n = 0; n < kNTiles; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;

  // ldmatrix row addresses: lanes 8j..8j+7 give the rows of matrix j.
  const int mrow = lane % 8, mat = lane / 8;
  for (int i = 0; warp + i * kWarps < nchunks; ++i) {
    if constexpr (kStages == 1) {
      __syncwarp();  // the previous chunk is read before its stage is refilled
      issue(i);
      cp_wait<0>();
      __syncwarp();
    } else {
      cp_wait<kStages - 2>();
      __syncwarp();  // every lane's copies landed; the previous stage is read
      issue(i + kStages - 1);  // into the stage the previous iteration read
    }
    const u8* st = my_stages + (i % kStages) * kStageBytes;
    const u8* vst = st + kChunk * kKPitch;
    const u32* pst = reinterpret_cast<const u32*>(vst + kChunk * kVPitch);
    const int t0 = start + (warp + i * kWarps) * kChunk;

    // S = Q K^T for the chunk's two 8-token n tiles, two K segments (the k steps they hold)
    // at a time.
    float sc[2][4];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.f;
#pragma unroll
    for (int s = 0; s < kKSeg; s += 2) {
      // matrices: (tokens 0-7, seg s), (8-15, s), (0-7, s+1), (8-15, s+1)
      u32 r[4], raw[2][kKSeg];
      ldsm_x4(smem_addr(st + ((mat % 2) * 8 + mrow) * kKPitch + (s + mat / 2) * 16), r);
      raw[0][s] = r[0];
      raw[1][s] = r[1];
      raw[0][s + 1] = r[2];
      raw[1][s + 1] = r[3];
      constexpr int kStepsPerPair = 16 / KPart::kBits;  // k steps in two segments
#pragma unroll
      for (int ks = s * kStepsPerPair / 2; ks < (s + 2) * kStepsPerPair / 2; ++ks) {
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
          u32 b0, b1;
          k_frag(raw, nt, ks, b0, b1);
          mma(sc[nt], qa[ks], b0, b1);
        }
      }
    }
    // Scale and zero per token (online) or per head, the mask, then the online softmax per row.
    float p[2][4];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      if (h == 1 && !kTwoRowHalves) break;
      float s[4];
      float mx = m[h];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int nt = j / 2, tok = nt * 8 + 2 * c + (j % 2);
        float ksc = ks_c, kzc = kz_c;
        if constexpr (KPart::kOnline) {
          const u32 kp = pst[tok];
          ksc = half_to_float((u16)kp);
          kzc = half_to_float((u16)(kp >> 16));
        }
        float dot = sc[nt][2 * h + j % 2];
        if constexpr (KPart::kQuantized) dot = fmaf(dot, ksc, qsum[h] * kzc);
        s[j] = t0 + tok < end ? dot * qscale : __int_as_float(0xff800000);
        mx = fmaxf(mx, s[j]);
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float corr = exp2f(m[h] - mx);
      m[h] = mx;
      l[h] *= corr;
      zacc[h] *= corr;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int tok = (j / 2) * 8 + 2 * c + (j % 2);
        float pj = exp2f(s[j] - mx);
        l[h] += pj;
        if constexpr (VPart::kOnline) {
          // Past the end the parameters are unwritten (maybe NaN): zero instead.
          const u32 vp = t0 + tok < end ? pst[kChunk + tok] : 0u;
          zacc[h] = fmaf(pj, half_to_float((u16)(vp >> 16)), zacc[h]);
          pj *= half_to_float((u16)vp);
        }
        p[j / 2][2 * h + j % 2] = pj;
      }
      // Once the maxima settle, corr is exactly 1 for every row of the warp: skip the rescale.
      if (__any_sync(0xffffffffu, corr != 1.f)) {
#pragma unroll
        for (int n = 0; n < kNTiles; ++n) {
          acc[n][2 * h] *= corr;
          acc[n][2 * h + 1] *= corr;
        }
      }
    }
    // P as the A operand (k = the chunk's 16 tokens).
    u32 pa[4];
    pa[0] = pack_half2(p[0][0], p[0][1]);
    pa[2] = pack_half2(p[1][0], p[1][1]);
    if constexpr (kTwoRowHalves) {
      pa[1] = pack_half2(p[0][2], p[0][3]);
      pa[3] = pack_half2(p[1][2], p[1][3]);
    } else {
      pa[1] = pa[3] = 0u;
    }
    // O += P V, two V segments per ldmatrix.trans.x4: (seg s, tokens 0-7), (s, 8-15), (s+1, ..).
#pragma unroll
    for (int s = 0; s < kVSeg; s += 2) {
      u32 r[4];
      ldsm_x4_trans(smem_addr(vst + ((mat % 2) * 8 + mrow) * kVPitch + (s + mat / 2) * 16), r);
#pragma unroll
      for (int half = 0; half < 2; ++half) {
#pragma unroll
        for (int sub = 0; sub < kVTilesPerSeg; ++sub) {
          mma(acc[(s + half) * kVTilesPerSeg + sub], pa, v_frag(r[2 * half], sub),
              v_frag(r[2 * half + 1], sub));
        }
      }
    }
  }
  cp_wait<0>();
  __syncthreads();  // the pipeline's shared memory becomes the combine buffers

  float* sm_acc = reinterpret_cast<float*>(smem);                 // [kWarps][kGroup][kHeadDim]
  float* sm_m = sm_acc + kWarps * kGroup * kHeadDim;              // [kWarps][kGroup]
  float* sm_l = sm_m + kWarps * kGroup;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = g + 8 * h;
    float lw = l[h], zw = zacc[h];
    lw += __shfl_xor_sync(0xffffffffu, lw, 1);
    lw += __shfl_xor_sync(0xffffffffu, lw, 2);
    zw += __shfl_xor_sync(0xffffffffu, zw, 1);
    zw += __shfl_xor_sync(0xffffffffu, zw, 2);
    if (row < kGroup) {
      float* dst = sm_acc + (warp * kGroup + row) * kHeadDim;
#pragma unroll
      for (int n = 0; n < kNTiles; ++n) {
        const int seg = n / kVTilesPerSeg, sub = n % kVTilesPerSeg;
        dst[v_dim(seg, sub, 2 * c)] = acc[n][2 * h] + zw;
        dst[v_dim(seg, sub, 2 * c + 1)] = acc[n][2 * h + 1] + zw;
      }
      if (c == 0) {
        sm_m[warp * kGroup + row] = m[h];
        sm_l[warp * kGroup + row] = lw;
      }
    }
  }
  __syncthreads();
  combine_warps_and_store<kWarps>(
      sm_acc, sm_m, sm_l,
      [&](int, float a, float lsum) {
        if constexpr (VPart::kCalibrated) return fmaf(a, vs_c, lsum * vz_c);
        return a;
      },
      kvh, b, split, nsplit, out, partial_out, partial_ml);
}
}  // namespace kvcc

extern "C" __global__ void __launch_bounds__(kvcc_spec::kThreads, kvcc_spec::kMinBlocks)
    kvcc_decode_attention_tc(const kvcc::kernels::DecodeAttentionParams p) {
  kvcc::decode_attention_tc(static_cast<const kvcc::io_t*>(p.q), p.cache.k, p.cache.v,
                            p.cache.k_params, p.cache.v_params, p.cache.k_zp, p.cache.k_scale,
                            p.cache.v_zp, p.cache.v_scale, p.block_tables, p.max_blocks,
                            p.seq_lens, p.softmax_scale, p.tokens_per_split,
                            static_cast<kvcc::io_t*>(p.out), p.partial_out, p.partial_ml);
}

#endif  // KVCC_CODEGEN_DECODE_ATTENTION_TC_CUH_
