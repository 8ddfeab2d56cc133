// Shared device helpers of the kvcc attention kernel templates: fp16 conversion, the paged-cache
// row loads with the dequantization of ir/kv_quant.h fused in, and warp reductions; and the
// specialization constants every template reads.
// No system headers, so NVRTC needs no include paths (kernel_spec.cc hands it the embedded
// codegen files as headers).
#ifndef KVCC_CODEGEN_KVCC_COMMON_CUH_
#define KVCC_CODEGEN_KVCC_COMMON_CUH_

// A specialization declares every constant; a template uses only some of them.
#pragma nv_diag_suppress 177

// The specialization: kernel_spec.cc's NVRTC prelude defines each KVCC_* macro and then
// includes one template. The defaults (head_dim 128, 32 heads, f16 cache, the tiles
// ResolveDefaults picks for that shape, no register cap) make every template a complete translation unit that an editor or
// `nvcc -c` checks on its own (tests/CMakeLists.txt does, for sm_90a and sm_80).
#ifndef KVCC_HEAD_DIM
#define KVCC_HEAD_DIM 128
#endif
#ifndef KVCC_HEADS
#define KVCC_HEADS 32
#endif
#ifndef KVCC_KV_HEADS
#define KVCC_KV_HEADS 32
#endif
#ifndef KVCC_BLOCK_SIZE
#define KVCC_BLOCK_SIZE 64
#endif
// K's storage: bits, granularity, fp8 (8 bits as e4m3 instead of an integer).
#ifndef KVCC_CACHE_BITS
#define KVCC_CACHE_BITS 16  // 16 (f16), 8 or 4
#endif
#ifndef KVCC_SCHEME
#define KVCC_SCHEME 0  // 0 none (f16), 1 per_layer, 2 per_head, 3 online, 4 per_channel
#endif
#ifndef KVCC_K_FP8
#define KVCC_K_FP8 0
#endif
// V's storage, by default K's.
#ifndef KVCC_V_CACHE_BITS
#define KVCC_V_CACHE_BITS KVCC_CACHE_BITS
#endif
#ifndef KVCC_V_SCHEME
#define KVCC_V_SCHEME KVCC_SCHEME
#endif
#ifndef KVCC_V_FP8
#define KVCC_V_FP8 KVCC_K_FP8
#endif
#ifndef KVCC_IO_F16
#define KVCC_IO_F16 1  // activations f16 (1) or f32 (0)
#endif
#ifndef KVCC_THREADS
#define KVCC_THREADS 128
#endif
#ifndef KVCC_VEC_BYTES
#define KVCC_VEC_BYTES 16
#endif
#ifndef KVCC_UNROLL
#define KVCC_UNROLL 4
#endif
#ifndef KVCC_Q_TILE
#define KVCC_Q_TILE 16
#endif
#ifndef KVCC_KV_TILE
#define KVCC_KV_TILE 32
#endif
#ifndef KVCC_MIN_BLOCKS
#define KVCC_MIN_BLOCKS 1
#endif
#ifndef KVCC_PREFETCH
#define KVCC_PREFETCH 1
#endif

#include "attention_params.h"

namespace kvcc_spec {
constexpr int kHeadDim = KVCC_HEAD_DIM;
constexpr int kHeads = KVCC_HEADS;
constexpr int kKvHeads = KVCC_KV_HEADS;
constexpr int kGroup = kHeads / kKvHeads;
constexpr int kBlockSize = KVCC_BLOCK_SIZE;
constexpr int kThreads = KVCC_THREADS;
constexpr int kVecBytes = KVCC_VEC_BYTES;
constexpr int kUnroll = KVCC_UNROLL;
constexpr int kQTile = KVCC_Q_TILE;
constexpr int kKvTile = KVCC_KV_TILE;
constexpr int kMinBlocks = KVCC_MIN_BLOCKS;
constexpr bool kPrefetch = KVCC_PREFETCH != 0;
}  // namespace kvcc_spec

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;

namespace kvcc {
using namespace kvcc_spec;

__device__ __forceinline__ float half_to_float(u16 h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}
__device__ __forceinline__ u16 float_to_half(float f) {
  u16 h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
}

#if KVCC_IO_F16
typedef u16 io_t;
__device__ __forceinline__ float load_io(const io_t* p) { return half_to_float(*p); }
__device__ __forceinline__ void store_io(io_t* p, float v) { *p = float_to_half(v); }
#else
typedef float io_t;
__device__ __forceinline__ float load_io(const io_t* p) { return *p; }
__device__ __forceinline__ void store_io(io_t* p, float v) { *p = v; }
#endif

constexpr float kLog2e = 1.4426950408889634f;

// How one part of the cache (K or V) is stored: runtime/kv_cache_layout.h, ir/kv_cache_scheme.h.
template <int BITS, int SCHEME, bool FP8>
struct CachePart {
  static constexpr int kBits = BITS;
  static constexpr bool kFp8 = FP8;
  static constexpr bool kQuantized = SCHEME != 0;
  static constexpr bool kOnline = SCHEME == 3;
  static constexpr bool kCalibrated = kQuantized && !kOnline;
  static constexpr bool kPerChannel = SCHEME == 4;
  // Calibrated integer schemes store signed values ([-128,127], [-8,7]); online ones unsigned.
  static constexpr bool kSigned = kCalibrated && !FP8;
  static constexpr int kRowBytes = kHeadDim * BITS / 8;
  static constexpr int kLevels = (1 << BITS) - 1;  // online: 255 or 15
  // Index of (kv head, channel) in a calibrated zp/scale array.
  __device__ __forceinline__ static int param(int head, int c) {
    return SCHEME == 1 ? 0 : SCHEME == 4 ? head * kHeadDim + c : head;
  }
  // Byte offset of (block, kv head, slot) in one layer's array of this part.
  __device__ __forceinline__ static i64 row_offset(int block, int head, int slot) {
    return ((i64)block * kKvHeads + head) * kBlockSize * (i64)kRowBytes + (i64)slot * kRowBytes;
  }
};
typedef CachePart<KVCC_CACHE_BITS, KVCC_SCHEME, KVCC_K_FP8 != 0> KPart;
typedef CachePart<KVCC_V_CACHE_BITS, KVCC_V_SCHEME, KVCC_V_FP8 != 0> VPart;

// Index of the (scale, zero) fp16 pair of (block, head, slot) in an online params array.
__device__ __forceinline__ i64 param_index(int block, int head, int slot) {
  return (((i64)block * kKvHeads + head) * kBlockSize + slot) * 2;
}

// ir/fp8_e4m3.h FloatToFp8E4M3, statement for statement (round to nearest even, saturating to
// +-448), so the cache bytes equal the CPU backend's.
__device__ __forceinline__ u8 float_to_fp8_e4m3(float f) {
  const u32 u = __float_as_uint(f);
  const u32 sign = (u >> 24) & 0x80u;
  const u32 abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return (u8)(sign | 0x7fu);
  if (abs >= 0x43e00000u) return (u8)(sign | 0x7eu);
  if (abs < 0x3c800000u) {
    if (abs < 0x3a800000u) return (u8)sign;
    const u32 exp = abs >> 23;
    const u32 mant = (abs & 0x7fffffu) | 0x800000u;
    const u32 shift = 141u - exp;
    const u32 rest = mant & ((1u << shift) - 1u);
    const u32 half_point = 1u << (shift - 1u);
    u32 q = mant >> shift;
    if (rest > half_point || (rest == half_point && (q & 1u))) ++q;
    return (u8)(sign | q);
  }
  u32 q = (abs >> 20) - (120u << 3);
  const u32 rest = abs & 0xfffffu;
  if (rest > 0x80000u || (rest == 0x80000u && (q & 1u))) ++q;
  return (u8)(sign | q);
}
// e4m3 byte -> float, exact: the magnitude bits at the top of a float, times 2^120 (covers the
// subnormals too). The NaN code is never written (the writer saturates).
__device__ __forceinline__ float fp8_e4m3_to_float(u32 b) {
  return __uint_as_float(((b & 0x7fu) << 20) | ((b & 0x80u) << 24)) *
         1.329227995784915872903807060280344576e36f;
}

template <int VB>
struct Raw {
  static constexpr int kWords = VB >= 4 ? VB / 4 : 1;
  u32 w[kWords];
};

template <int VB>
__device__ __forceinline__ void load_raw(const u8* p, Raw<VB>& r) {
  if constexpr (VB == 16) {
    uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
    r.w[0] = v.x; r.w[1] = v.y; r.w[2] = v.z; r.w[3] = v.w;
  } else if constexpr (VB == 8) {
    uint2 v = __ldg(reinterpret_cast<const uint2*>(p));
    r.w[0] = v.x; r.w[1] = v.y;
  } else if constexpr (VB == 4) {
    r.w[0] = __ldg(reinterpret_cast<const u32*>(p));
  } else if constexpr (VB == 2) {
    r.w[0] = __ldg(reinterpret_cast<const u16*>(p));
  } else {
    r.w[0] = __ldg(p);
  }
}

// Stored value -> float, before the scheme's scale and zero: f16 values, or the integer
// q exactly, or the fp8 value. Integers go through the 2^23 magic-number trick (byte/nibble placed in a float's
// mantissa, then one subtraction), cheaper than integer-to-float conversion.
template <int VB, typename P>
struct Unpack {
  static constexpr int kCacheBits = P::kBits;
  static constexpr bool kSigned = P::kSigned;
  static constexpr int kElems = VB * 8 / kCacheBits;
  __device__ __forceinline__ static void run(const Raw<VB>& r, float (&f)[kElems]) {
    if constexpr (kCacheBits == 16) {
#pragma unroll
      for (int i = 0; i < kElems; ++i) f[i] = half_to_float((u16)(r.w[i / 2] >> (16 * (i % 2))));
    } else if constexpr (P::kFp8) {
#pragma unroll
      for (int i = 0; i < kElems; ++i) f[i] = fp8_e4m3_to_float(r.w[i / 4] >> (8 * (i % 4)));
    } else if constexpr (kCacheBits == 8) {
      constexpr u32 kFlip = kSigned ? 0x80808080u : 0u;
      constexpr float kBias = kSigned ? 8388736.0f : 8388608.0f;
#pragma unroll
      for (int i = 0; i < kElems; ++i) {
        u32 m = __byte_perm(r.w[i / 4] ^ kFlip, 0x4B000000u, 0x7540 + (i % 4));
        f[i] = __int_as_float((int)m) - kBias;
      }
    } else {
      // Nibble k of a half-word is masked in place (no shift) into the magic float, giving
      // 2^23 + n * 16^k exactly; one FMA scales by 16^-k and removes 2^23 and the sign bias,
      // exactly (the result is a small integer). One LOP3 + one FFMA per element.
      constexpr u32 kFlip = kSigned ? 0x88888888u : 0u;
      constexpr float kBias = kSigned ? 8.0f : 0.0f;
#pragma unroll
      for (int wi = 0; wi < (kElems + 7) / 8; ++wi) {
        const u32 w = r.w[wi] ^ kFlip;
        const u32 halves[2] = {w, w >> 16};
#pragma unroll
        for (int j = 0; j < 8 && wi * 8 + j < kElems; ++j) {
          const int k = j % 4;
          const float inv = k == 0 ? 1.f : k == 1 ? 0.0625f : k == 2 ? 0.00390625f : 0.000244140625f;
          const u32 m = (halves[j / 4] & (0xFu << (4 * k))) | 0x4B000000u;
          f[wi * 8 + j] = fmaf(__int_as_float((int)m), inv, -8388608.0f * inv - kBias);
        }
      }
    }
  }
};

template <int WIDTH>
__device__ __forceinline__ float group_sum(float v) {
#pragma unroll
  for (int off = WIDTH / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}
__device__ __forceinline__ float warp_min(float v) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v = fminf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

__host__ __device__ constexpr int next_pow2(int x) { return x <= 1 ? 1 : 2 * next_pow2((x + 1) / 2); }

}  // namespace kvcc

#endif  // KVCC_CODEGEN_KVCC_COMMON_CUH_
