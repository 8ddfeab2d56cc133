// Decode attention on tensor cores for grouped-query attention, with the cached tokens as the
// M rows of mma.sync.m16n8k16 and the kGroup query heads of one KV head as its N = 8 columns
// (two n tiles for groups of 9-16): S^T = K q^T (K the A operand, 16 tokens x 16 dims, straight
// from ldmatrix) and O^T = V^T P^T (V^T the A operand by ldmatrix.trans, P^T the B operand made
// from the S^T accumulators by movmatrix.trans). So each K/V element is read and dequantized
// once per KV head and no mma row is padding (the query heads as M rows, padded to 16, wasted
// 75% of every mma at GQA 4:1 and the registers of a 16-row tile).
// One CTA per (kv head, session, split); each warp owns every kWarps-th chunk of 16 tokens and
// streams it through a cp.async pipeline of kStages shared-memory stages (rows padded by 16
// bytes so ldmatrix is conflict-free). Stored values become f16 exactly in registers, one
// instruction a pair (int8: PRMT into 0x64xx, code + 1024; int4: LOP3 into the mantissa of
// 1024 or 64; fp8 e4m3: cvt.e4m3x2 on sm_89+, else a shift and a mask giving value/256, the 2^8
// folded into the scale; f16 as is; the integer codes' bias taken out of S and O in f32, see
// byte_pair), so S = q.code is exact in f16 products with f32 accumulation and the scheme's
// scale and zero are applied to S in f32, as in decode_attention.cuh. The dot product does not care about the order of the dims, so
// each thread takes the bytes ldmatrix hands it and q is loaded in the same permuted order;
// the output dims are permuted back on the store.
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
constexpr int kChunk = 16;  // tokens per warp per step: the M of S^T, the k of the PV mma
constexpr int kHTiles = (kGroup + 7) / 8;  // n tiles of 8 query heads
constexpr int kKSeg = KPart::kRowBytes / 16;  // 16-byte segments per K row
constexpr int kVSeg = VPart::kRowBytes / 16;
constexpr int kKPitch = KPart::kRowBytes + 16;  // padded smem row: 8 rows hit 8 bank groups
constexpr int kVPitch = VPart::kRowBytes + 16;
constexpr int kKSteps = kHeadDim / 16;  // k steps of S^T = K q^T
constexpr int kMTiles = kHeadDim / 16;  // m tiles (16 dims) of O^T = V^T P^T
// The (scale, zero) pairs of the chunk's 16 tokens, K's then V's, when either part is online.
constexpr int kParamBytes = KPart::kOnline || VPart::kOnline ? 2 * kChunk * 4 : 0;
constexpr int kStageBytes = kChunk * (kKPitch + kVPitch) + kParamBytes;
constexpr int kKCopies = kChunk * kKSeg / 32, kVCopies = kChunk * kVSeg / 32;  // per lane
constexpr int kKRowsPerPass = 32 / kKSeg, kVRowsPerPass = 32 / kVSeg;
// The spec's unroll is the pipeline depth; the stages live in dynamic shared memory, which
// codegen/decode_attention_tc.cc sizes (DecodeTcSharedBytes, the same sum) and the launch gives.
constexpr int kStages = kUnroll > 0 ? kUnroll : 1;
// Chunks per softmax step (the spec's kv_tile / 16): 2 needs at least 3 stages, as a step
// waits for two chunks and refills the stage of its first one mid-step.
constexpr int kSub = kKvTile / kChunk;
constexpr int kPipeBytes = kWarps * kStages * kStageBytes;
constexpr int kEpiBytes = kWarps * kGroup * (kHeadDim + 2) * 4;
constexpr int kSmemBytes = kPipeBytes > kEpiBytes ? kPipeBytes : kEpiBytes;
static_assert(kHeadDim == 64 || kHeadDim == 128, "head_dim 64 or 128");
static_assert(kBlockSize % kChunk == 0, "a 16-token chunk must lie in one cache block");
static_assert(kGroup <= 16, "at most 16 query heads per kv head");
static_assert(!KPart::kPerChannel && !VPart::kPerChannel, "per-channel parts: decode_attention");
static_assert(kKSeg % 2 == 0 && kVSeg % 2 == 0, "rows of an even number of 16-byte segments");
static_assert(kStageBytes % 16 == 0, "16-byte aligned stages");
static_assert(kSub == 1 || (kSub == 2 && kStages >= 3), "kv_tile 16, or 32 with 3+ stages");
static_assert(kSmemBytes <= 227 * 1024, "shared memory of one CTA");

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
// The 8x8 f16 matrix whose row lane / 4 this thread holds (elements 2 (lane % 4) and + 1),
// transposed in registers.
__device__ __forceinline__ u32 movmatrix_trans(u32 a) {
  u32 d;
  asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(d) : "r"(a));
  return d;
}
// d = a * b + d, f16 inputs, f32 accumulation.
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
__device__ __forceinline__ u32 pack_half2(float lo, float hi) {
  return (u32)float_to_half(lo) | ((u32)float_to_half(hi) << 16);
}

// Integer codes enter the mmas as f16 `code + bias`, the bias (bias() below) taken out of the
// f32 results (S: q . bias per head; O: bias x the sum of P): one PRMT or LOP3 per pair of
// values instead of that and a subtraction. The f32 sums then carry the bias too, so their
// rounding grows with bias / code: 10 for int8, 4 for the odd nibbles of int4, but 64 for its
// even ones, which K (where the error reaches the softmax) takes exactly, by the subtraction.
// w ^ FLIP, opaque to the compiler, so a word is flipped once, not again after each shift.
template <u32 FLIP>
__device__ __forceinline__ u32 flip(u32 w) {
  if constexpr (FLIP == 0) {
    return w;
  } else {
    u32 d;
    asm("xor.b32 %0, %1, %2;\n" : "=r"(d) : "r"(w), "n"(FLIP));
    return d;
  }
}
// fp8 e4m3 pairs by the sm_89+ conversion (one instruction, the values themselves), else by a
// shift and a mask (value / 256).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
constexpr bool kFp8Cvt = true;
#else
constexpr bool kFp8Cvt = false;
#endif
// Bytes LO and HI of a 32-bit word -> f16x2 (LO low), exactly: integer codes + bias, fp8.
template <typename P, int LO, int HI>
__device__ __forceinline__ u32 byte_pair(u32 w) {
  if constexpr (P::kFp8 && kFp8Cvt) {
    static_assert(HI == LO + 1 || HI == LO + 2, "byte pairs (0,1) (2,3) or (0,2) (1,3)");
    // (0,2) and (1,3): one PRMT makes them the halves of a word (the same for both).
    const u32 x = HI == LO + 1 ? w : __byte_perm(w, 0u, 0x3120);
    u32 d;
    if constexpr (LO % 2 == 0 && HI != 3) {
      asm("{.reg .b16 lo, hi;\n mov.b32 {lo, hi}, %1;\n cvt.rn.f16x2.e4m3x2 %0, lo;\n}\n"
          : "=r"(d) : "r"(x));
    } else {
      asm("{.reg .b16 lo, hi;\n mov.b32 {lo, hi}, %1;\n cvt.rn.f16x2.e4m3x2 %0, hi;\n}\n"
          : "=r"(d) : "r"(x));
    }
    return d;
  } else if constexpr (P::kFp8) {
    // each half: the byte in its high 8 bits
    const u32 x = __byte_perm(w, 0u, 4 | LO << 4 | 4 << 8 | HI << 12);
    return ((x >> 1) & 0x3f803f80u) | (x & 0x80008000u);
  } else {
    // 1024 + the byte (signed codes: + 128)
    return __byte_perm(flip<P::kSigned ? 0x80808080u : 0u>(w), 0x64646464u,
                       LO | 4 << 4 | HI << 8 | 4 << 12);
  }
}
// Nibbles 0 and 4 (q = 0), 1 and 5 (q = 1), 2 and 6 (q = 2) or 3 and 7 (q = 3) of a word ->
// f16x2 codes + bias, exactly: even q masked into the mantissa of 1024 (ulp 1; EXACT_EVEN: the
// code itself, 1024 (+ 8) subtracted), odd q (the nibble 4 bits up) into that of 64 (ulp 1/16).
// (w & mask) | magic in one LOP3 (the flip of signed codes is taken by the xor form, as the
// compiler would otherwise spend a second LOP3 per pair on it).
template <u32 MASK, u32 MAGIC>
__device__ __forceinline__ u32 and_or(u32 w) {
  u32 d;
  asm("lop3.b32 %0, %1, %2, %3, 0xea;\n" : "=r"(d) : "r"(w), "n"(MASK), "n"(MAGIC));
  return d;
}
template <typename P, bool EXACT_EVEN>
__device__ __forceinline__ u32 nibble_pair(u32 w, int q) {
  w = flip<P::kSigned ? 0x88888888u : 0u>(w);  // signed codes: + 8
  if (q >= 2) w >>= 8;
  if (q % 2 == 1) return and_or<0x00f000f0u, 0x54005400u>(w);
  const u32 x = and_or<0x000f000fu, 0x64006400u>(w);
  return EXACT_EVEN ? hsub2(x, P::kSigned ? 0x64086408u : 0x64006400u) : x;
}
// The bias byte_pair or nibble_pair (odd q: `odd`) adds to a code of part P; 0 for f16, fp8.
template <typename P, bool EXACT_EVEN>
__device__ __forceinline__ constexpr float bias(bool odd) {
  if constexpr (P::kBits == 16 || P::kFp8) return 0.f;
  const float flip = !P::kSigned ? 0.f : P::kBits == 8 ? 128.f : 8.f;
  if constexpr (P::kBits == 4) return odd ? 64.f + flip : EXACT_EVEN ? 0.f : 1024.f + flip;
  return 1024.f + flip;
}

// K as the A operand of S^T = K q^T for k step ks: raw[seg][h] is the word ldmatrix gave this
// thread of the 16-byte segment `seg` of token lane / 4 + 8 h.
__device__ __forceinline__ void k_frag(const u32 (&raw)[kKSeg][2], int ks, u32 (&a)[4]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if constexpr (KPart::kBits == 16) {
      a[h] = raw[2 * ks][h];
      a[2 + h] = raw[2 * ks + 1][h];
    } else if constexpr (KPart::kBits == 8) {
      a[h] = byte_pair<KPart, 0, 1>(raw[ks][h]);
      a[2 + h] = byte_pair<KPart, 2, 3>(raw[ks][h]);
    } else {
      a[h] = nibble_pair<KPart, true>(raw[ks / 2][h], (ks % 2) * 2);
      a[2 + h] = nibble_pair<KPart, true>(raw[ks / 2][h], (ks % 2) * 2 + 1);
    }
  }
}
// The head dim that element r (a[0] low, a[0] high, a[2] low, a[2] high) of k_frag's k step ks
// holds for the thread with lane % 4 == c: q's B fragment is loaded in this order.
__device__ __forceinline__ int k_dim(int ks, int c, int r) {
  if constexpr (KPart::kBits == 16) return ks * 16 + (r >= 2 ? 8 : 0) + 2 * c + (r & 1);
  if constexpr (KPart::kBits == 8) return ks * 16 + 4 * c + r;
  // Nibble i of the thread's word is dim seg * 32 + 8c + i; pairs (0,4) (1,5) | (2,6) (3,7).
  const int nib = (ks % 2) * 2 + (r >> 1) + (r & 1) * 4;
  return (ks / 2) * 32 + 8 * c + nib;
}
// V^T as the A operand of O^T = V^T P^T for m tile mt: w[seg][t] is the ldmatrix.trans word
// of 16-byte segment seg for tokens 2c, 2c+1 (t = 0) or 8+2c, 8+2c+1 (t = 1).
__device__ __forceinline__ void v_frag(const u32 (&w)[kVSeg][2], int mt, u32 (&a)[4]) {
#pragma unroll
  for (int t = 0; t < 2; ++t) {
    if constexpr (VPart::kBits == 16) {  // segments 2mt (dims +0..7), 2mt+1 (+8..15)
      a[2 * t] = w[2 * mt][t];
      a[2 * t + 1] = w[2 * mt + 1][t];
    } else if constexpr (VPart::kBits == 8) {  // segment mt: bytes 0, 2 and 1, 3
      a[2 * t] = byte_pair<VPart, 0, 2>(w[mt][t]);
      a[2 * t + 1] = byte_pair<VPart, 1, 3>(w[mt][t]);
    } else {  // segment mt / 2: nibbles 2 (mt % 2) and + 1 of each token
      a[2 * t] = nibble_pair<VPart, false>(w[mt / 2][t], (mt % 2) * 2);
      a[2 * t + 1] = nibble_pair<VPart, false>(w[mt / 2][t], (mt % 2) * 2 + 1);
    }
  }
}
// The head dim of row g (h = 0) or g + 8 (h = 1) of v_frag's m tile mt.
__device__ __forceinline__ int v_dim(int mt, int g, int h) {
  if constexpr (VPart::kBits == 16) return mt * 16 + 8 * h + g;
  if constexpr (VPart::kBits == 8) return mt * 16 + 2 * g + h;
  return (mt / 2) * 32 + 4 * g + (mt % 2) * 2 + h;
}
// The bias of v_frag's rows g + 8 h (int4: odd dims, odd q).
__device__ __forceinline__ constexpr float v_bias(int h) { return bias<VPart, false>(h == 1); }
// fp8 codes by the shift and mask come out as value / 256: the scale takes the 256.
constexpr float kKUnit = KPart::kFp8 && !kFp8Cvt ? 256.f : 1.f;
constexpr float kVUnit = VPart::kFp8 && !kFp8Cvt ? 256.f : 1.f;
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

  extern __shared__ __align__(16) u8 smem[];  // kSmemBytes
  u8* const my_stages = smem + warp * kStages * kStageBytes;
  const u32 k_lane = (u32)(lane / kKSeg * kKPitch + lane % kKSeg * 16);
  const u32 v_lane = (u32)(lane / kVSeg * kVPitch + lane % kVSeg * 16);

  // The cache blocks of this warp's chunks, 32 at a time: lane j holds that of chunk
  // 32 w + j of window w (blk_cur) and of the next window (blk_next, loaded a window ahead),
  // so no table load stands between a chunk and its copies.
  auto block_of = [&](int i) {
    const int ci = warp + i * kWarps;
    return ci < nchunks ? __ldg(table + (start + ci * kChunk) / kBlockSize) : 0;
  };
  int window = 0, blk_cur = block_of(lane), blk_next = block_of(32 + lane);
  // Issues the copies of this warp's i-th chunk (i = 0, 1, 2, ... in turn) into stage
  // i % kStages (an empty group when there is no such chunk, so the wait counts stay uniform).
  auto issue = [&](int i) {
    const int ci = warp + i * kWarps;
    if (i / 32 != window) {  // warp-uniform: i is
      window = i / 32;
      blk_cur = blk_next;
      blk_next = block_of((window + 1) * 32 + lane);
    }
    const int blk = __shfl_sync(0xffffffffu, blk_cur, i % 32);
    if (ci < nchunks) {
      const int t0 = start + ci * kChunk;
      const int slot0 = t0 % kBlockSize;
      u8* st = my_stages + (i % kStages) * kStageBytes;
      // The chunk's rows are contiguous: lane copies 16 bytes every 512, the same offsets in
      // every chunk (k_lane, v_lane), rows kKRowsPerPass apart.
      const u8* ksrc = k_cache + KPart::row_offset(blk, kvh, slot0) + lane * 16;
      const u8* vsrc = v_cache + VPart::row_offset(blk, kvh, slot0) + lane * 16;
      const u32 kdst = smem_addr(st) + k_lane, vdst = smem_addr(st + kChunk * kKPitch) + v_lane;
      const int krem = end - t0 - lane / kKSeg, vrem = end - t0 - lane / kVSeg;
#pragma unroll
      for (int j = 0; j < kKCopies; ++j) {
        cp_async16(kdst + j * kKRowsPerPass * kKPitch, ksrc + j * 512, krem > j * kKRowsPerPass);
      }
#pragma unroll
      for (int j = 0; j < kVCopies; ++j) {
        cp_async16(vdst + j * kVRowsPerPass * kVPitch, vsrc + j * 512, vrem > j * kVRowsPerPass);
      }
      // Online (scale, zero) pairs: 16 tokens x 4 bytes per part, four 16-byte pieces each.
      u8* pst = st + kChunk * (kKPitch + kVPitch);
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

  // q as the B operand (column g of n tile ht: head ht * 8 + g, zero past the group), in
  // k_dim's order, exactly as stored in f16; the softmax scale is applied to S in f32.
  // qsum[ht][e] and qbias[ht][e] are the sum and q . (K's biases) of head ht * 8 + 2c + e, the
  // column of the S^T accumulators this thread holds.
  u32 qb[kHTiles][kKSteps][2];
  float qsum[kHTiles][2], qbias[kHTiles][2];
#pragma unroll
  for (int ht = 0; ht < kHTiles; ++ht) {
    const int head = ht * 8 + g;
    const bool used = head < kGroup;
    const io_t* qrow = q + ((i64)b * kHeads + kvh * kGroup + (used ? head : 0)) * kHeadDim;
    float sum = 0.f, bsum = 0.f;
#pragma unroll
    for (int ks = 0; ks < kKSteps; ++ks) {
      float v[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        v[r] = used ? half_to_float(float_to_half(load_io(qrow + k_dim(ks, c, r)))) : 0.f;
        sum += v[r];
        bsum = fmaf(v[r], bias<KPart, true>(r >= 2), bsum);
      }
      qb[ht][ks][0] = pack_half2(v[0], v[1]);
      qb[ht][ks][1] = pack_half2(v[2], v[3]);
    }
#pragma unroll
    for (int x = 1; x < 4; x *= 2) {
      sum += __shfl_xor_sync(0xffffffffu, sum, x);
      bsum += __shfl_xor_sync(0xffffffffu, bsum, x);
    }
    // Lanes 4g..4g+3 hold head ht * 8 + g.
    qsum[ht][0] = __shfl_sync(0xffffffffu, sum, 8 * c);
    qsum[ht][1] = __shfl_sync(0xffffffffu, sum, 8 * c + 4);
    qbias[ht][0] = __shfl_sync(0xffffffffu, bsum, 8 * c);
    qbias[ht][1] = __shfl_sync(0xffffffffu, bsum, 8 * c + 4);
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
  // Calibrated K: s (S - qbias) + z qsum as one FMA on S.
  float koff[kHTiles][2];
#pragma unroll
  for (int ht = 0; ht < kHTiles; ++ht) {
    for (int e = 0; e < 2; ++e) koff[ht][e] = qsum[ht][e] * kz_c - qbias[ht][e] * ks_c;
  }

  // Per column (head ht * 8 + 2c + e): the running max (uniform over the lanes of a column),
  // and this thread's share of the sum and of the online V zero term (summed at the end).
  // psum: the sum of the f16 P column (every row alike), by one more mma with a V^T of ones,
  // for taking V's bias out of acc.
  float m[kHTiles][2], l[kHTiles][2], zacc[kHTiles][2];
  float acc[kMTiles][kHTiles][4], psum[kHTiles][4];
#pragma unroll
  for (int ht = 0; ht < kHTiles; ++ht) {
    m[ht][0] = m[ht][1] = -1e30f;
    l[ht][0] = l[ht][1] = zacc[ht][0] = zacc[ht][1] = 0.f;
    psum[ht][0] = psum[ht][1] = psum[ht][2] = psum[ht][3] = 0.f;
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
      acc[mt][ht][0] = acc[mt][ht][1] = acc[mt][ht][2] = acc[mt][ht][3] = 0.f;
    }
  }

  // ldmatrix row addresses: lanes 8j..8j+7 give the rows of matrix j.
  const int mrow = lane % 8, mat = lane / 8;
  // One step: this warp's chunks i .. i + kSub - 1 with one softmax update for all of them
  // (the max shuffles and the rescale of acc once per kSub chunks). A chunk past the warp's
  // last (warp-uniform) is skipped: its stage was never filled.
  for (int i = 0; warp + i * kWarps < nchunks; i += kSub) {
    if constexpr (kStages == 1) {
      __syncwarp();  // the previous chunk is read before its stage is refilled
      issue(i);
      cp_wait<0>();
      __syncwarp();
    } else {
      cp_wait<kStages - 1 - kSub>();  // chunks i .. i + kSub - 1 landed
      __syncwarp();  // every lane's copies landed; the previous step's stages are read
      issue(i + kStages - 1);  // into the stage of chunk i - 1
    }
    float sc[kSub][kHTiles][4];
    // Scale and zero per token (online) or per head, and the mask.
    float ksc[kSub][2], kzc[kSub][2], vsc[kSub][2], vzc[kSub][2];
    bool valid[kSub][2];
#pragma unroll
    for (int j = 0; j < kSub; ++j) {
      const u8* st = my_stages + ((i + j) % kStages) * kStageBytes;
      const u32* pst = reinterpret_cast<const u32*>(st + kChunk * (kKPitch + kVPitch));
      const int t0 = start + (warp + (i + j) * kWarps) * kChunk;  // >= end for a skipped chunk
#pragma unroll
      for (int ht = 0; ht < kHTiles; ++ht) {
        sc[j][ht][0] = sc[j][ht][1] = sc[j][ht][2] = sc[j][ht][3] = 0.f;
      }
      if (j == 0 || warp + (i + j) * kWarps < nchunks) {
        // S^T = K q^T: rows the chunk's tokens g and g + 8, columns the heads.
        u32 raw[kKSeg][2];
#pragma unroll
        for (int s = 0; s < kKSeg; s += 2) {
          // matrices: (tokens 0-7, seg s), (8-15, s), (0-7, s+1), (8-15, s+1)
          u32 r[4];
          ldsm_x4(smem_addr(st + ((mat % 2) * 8 + mrow) * kKPitch + (s + mat / 2) * 16), r);
          raw[s][0] = r[0];
          raw[s][1] = r[1];
          raw[s + 1][0] = r[2];
          raw[s + 1][1] = r[3];
        }
#pragma unroll
        for (int ks = 0; ks < kKSteps; ++ks) {
          u32 a[4];
          k_frag(raw, ks, a);
#pragma unroll
          for (int ht = 0; ht < kHTiles; ++ht) mma(sc[j][ht], a, qb[ht][ks][0], qb[ht][ks][1]);
        }
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int tok = g + 8 * h;
        valid[j][h] = t0 + tok < end;
        ksc[j][h] = ks_c;
        kzc[j][h] = kz_c;
        vsc[j][h] = 1.f;
        vzc[j][h] = 0.f;
        if constexpr (KPart::kOnline) {
          const u32 kp = pst[tok];  // unwritten past the end: masked below
          ksc[j][h] = half_to_float((u16)kp);
          kzc[j][h] = half_to_float((u16)(kp >> 16));
        }
        if constexpr (VPart::kOnline) {
          // Past the end the parameters are unwritten (maybe NaN): zero instead.
          const u32 vp = valid[j][h] ? pst[kChunk + tok] : 0u;
          vsc[j][h] = half_to_float((u16)vp);
          vzc[j][h] = half_to_float((u16)(vp >> 16));
        }
      }
    }
    // The online softmax per column: the max over the step's tokens is over rows g, g + 8 of
    // each chunk and the 8 lanes of a column.
    u32 pb[kSub][kHTiles][2];
#pragma unroll
    for (int ht = 0; ht < kHTiles; ++ht) {
      float p[kSub][4];
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float s[kSub][2];
        float mx = m[ht][e];
#pragma unroll
        for (int j = 0; j < kSub; ++j) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            float dot = sc[j][ht][2 * h + e];
            if constexpr (KPart::kOnline) {
              dot = fmaf(dot - qbias[ht][e], ksc[j][h], qsum[ht][e] * kzc[j][h]);
            } else if constexpr (KPart::kQuantized) {
              dot = fmaf(dot, ks_c, koff[ht][e]);
            }
            s[j][h] = valid[j][h] ? dot * qscale : __int_as_float(0xff800000);
            mx = fmaxf(mx, s[j][h]);
          }
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 4));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 8));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 16));
        const float corr = exp2f(m[ht][e] - mx);
        m[ht][e] = mx;
        l[ht][e] *= corr;
        zacc[ht][e] *= corr;
#pragma unroll
        for (int j = 0; j < kSub; ++j) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            float pj = exp2f(s[j][h] - mx);
            l[ht][e] += pj;
            if constexpr (VPart::kOnline) {
              zacc[ht][e] = fmaf(pj, vzc[j][h], zacc[ht][e]);
              pj *= vsc[j][h];
            }
            p[j][2 * h + e] = pj;
          }
        }
        // Once the maxima settle, corr is exactly 1 for every column: skip the rescale.
        if (__any_sync(0xffffffffu, corr != 1.f)) {
#pragma unroll
          for (int mt = 0; mt < kMTiles; ++mt) {
            acc[mt][ht][e] *= corr;
            acc[mt][ht][2 + e] *= corr;
          }
          psum[ht][e] *= corr;
        }
      }
      // P^T as the B operand: rows (k) the tokens, column g the head, by transposing the
      // 8x8 f16 tiles of tokens 0-7 and 8-15 this thread holds row g of.
#pragma unroll
      for (int j = 0; j < kSub; ++j) {
        pb[j][ht][0] = movmatrix_trans(pack_half2(p[j][0], p[j][1]));
        pb[j][ht][1] = movmatrix_trans(pack_half2(p[j][2], p[j][3]));
      }
    }
#pragma unroll
    for (int j = 0; j < kSub; ++j) {
      if (j > 0 && warp + (i + j) * kWarps >= nchunks) continue;
      const u8* vst = my_stages + ((i + j) % kStages) * kStageBytes + kChunk * kKPitch;
      // O^T += V^T P^T, two V segments per ldmatrix.trans.x4: (seg s, tokens 0-7), (s, 8-15),
      // (s+1, 0-7), (s+1, 8-15).
      u32 w[kVSeg][2];
#pragma unroll
      for (int s = 0; s < kVSeg; s += 2) {
        u32 r[4];
        if constexpr (VPart::kBits == 16) {
          // (s, 0-7), (s+1, 0-7), (s, 8-15), (s+1, 8-15): v_frag's order, no moves
          ldsm_x4_trans(smem_addr(vst + ((mat / 2) * 8 + mrow) * kVPitch + (s + mat % 2) * 16), r);
          w[s][0] = r[0];
          w[s + 1][0] = r[1];
          w[s][1] = r[2];
          w[s + 1][1] = r[3];
        } else {
          ldsm_x4_trans(smem_addr(vst + ((mat % 2) * 8 + mrow) * kVPitch + (s + mat / 2) * 16), r);
          w[s][0] = r[0];
          w[s][1] = r[1];
          w[s + 1][0] = r[2];
          w[s + 1][1] = r[3];
        }
      }
      if constexpr (kSub == 2) {
        if (j == 0) {
          __syncwarp();  // chunk i's stage is read: refill it with chunk i + kStages
          issue(i + kStages);
        }
      }
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        u32 a[4];
        v_frag(w, mt, a);
#pragma unroll
        for (int ht = 0; ht < kHTiles; ++ht) mma(acc[mt][ht], a, pb[j][ht][0], pb[j][ht][1]);
      }
      if constexpr (v_bias(0) != 0.f) {
        const u32 ones[4] = {0x3c003c00u, 0x3c003c00u, 0x3c003c00u, 0x3c003c00u};
#pragma unroll
        for (int ht = 0; ht < kHTiles; ++ht) mma(psum[ht], ones, pb[j][ht][0], pb[j][ht][1]);
      }
    }
  }
  cp_wait<0>();
  __syncthreads();  // the pipeline's shared memory becomes the combine buffers

  float* sm_acc = reinterpret_cast<float*>(smem);                 // [kWarps][kGroup][kHeadDim]
  float* sm_m = sm_acc + kWarps * kGroup * kHeadDim;              // [kWarps][kGroup]
  float* sm_l = sm_m + kWarps * kGroup;
#pragma unroll
  for (int ht = 0; ht < kHTiles; ++ht) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int head = ht * 8 + 2 * c + e;
      float lw = l[ht][e], zw = zacc[ht][e];
#pragma unroll
      for (int x = 4; x < 32; x *= 2) {
        lw += __shfl_xor_sync(0xffffffffu, lw, x);
        zw += __shfl_xor_sync(0xffffffffu, zw, x);
      }
      if (head < kGroup) {
        float* dst = sm_acc + (warp * kGroup + head) * kHeadDim;
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
          dst[v_dim(mt, g, 0)] = fmaf(-v_bias(0), psum[ht][e], acc[mt][ht][e]) + zw;
          dst[v_dim(mt, g, 1)] = fmaf(-v_bias(1), psum[ht][e], acc[mt][ht][2 + e]) + zw;
        }
        if (g == 0) {
          sm_m[warp * kGroup + head] = m[ht][e];
          sm_l[warp * kGroup + head] = lw;
        }
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
  kvcc::allow_dependents();
  kvcc::decode_attention_tc(static_cast<const kvcc::io_t*>(p.q), p.cache.k, p.cache.v,
                            p.cache.k_params, p.cache.v_params, p.cache.k_zp, p.cache.k_scale,
                            p.cache.v_zp, p.cache.v_scale, p.block_tables, p.max_blocks,
                            p.seq_lens, p.softmax_scale, p.tokens_per_split,
                            static_cast<kvcc::io_t*>(p.out), p.partial_out, p.partial_ml);
}

#endif  // KVCC_CODEGEN_DECODE_ATTENTION_TC_CUH_
