// IEEE binary16 and bfloat16 <-> float conversions, done in software so that every backend
// (and every test) rounds exactly the same way: round to nearest, ties to even, with NaN and
// infinity preserved. Inline because weight rows are converted in the GEMM inner loops.
#pragma once

#include <cstdint>
#include <cstring>

namespace kvcc::ir {

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return BitsFloat(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  if (exp != 0) return BitsFloat(sign | ((exp + 112) << 23) | (mant << 13));
  // Zero or subnormal: mant * 2^-24, exact in float.
  const float mag = static_cast<float>(mant) * 5.9604644775390625e-8f;
  return sign ? -mag : mag;
}

inline uint16_t FloatToHalf(float f) {
  const uint32_t u = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf or NaN (NaN keeps a quiet payload bit)
    return sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u | ((abs >> 13) & 0x3ffu) : 0u);
  }
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: overflow to inf
  if (abs < 0x38800000u) {
    // Result is subnormal (or zero) in half: value / 2^-24 rounded to nearest even integer.
    if (abs < 0x33000000u) return sign;  // < 2^-25: rounds to zero (2^-25 itself ties to 0)
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exp;  // 14..24 places to drop (value = mant * 2^(exp-150))
    const uint32_t rest = mant & ((1u << shift) - 1);
    const uint32_t half_point = 1u << (shift - 1);
    uint32_t q = mant >> shift;
    if (rest > half_point || (rest == half_point && (q & 1u))) ++q;
    return sign | static_cast<uint16_t>(q);
  }
  // Normal: rebias the exponent, round the 13 dropped mantissa bits to nearest even. A carry
  // out of the mantissa correctly bumps the exponent.
  uint32_t h = ((abs >> 13) - (112u << 10));
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return sign | static_cast<uint16_t>(h);
}

inline float Bf16ToFloat(uint16_t b) { return BitsFloat(static_cast<uint32_t>(b) << 16); }

inline uint16_t FloatToBf16(float f) {
  const uint32_t u = FloatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // NaN
  const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

// Converts n halves to floats, bit-identical to HalfToFloat, four at a time with GCC/Clang
// vector extensions (plain SSE2: integer masks instead of branches) because weight rows and
// cached K/V rows go through here in the inner loops.
inline void HalfToFloatRow(const uint16_t* in, float* out, int64_t n) {
  typedef uint16_t H8 __attribute__((vector_size(16)));
  typedef uint32_t U4 __attribute__((vector_size(16)));
  typedef float F4 __attribute__((vector_size(16)));
  auto convert = [](U4 h) {
    const U4 sign = (h & 0x8000u) << 16;
    const U4 em = (h & 0x7fffu) << 13;  // exponent and mantissa in float position
    const U4 exp = em & 0x0f800000u;
    const U4 normal = em + (112u << 23);
    const U4 inf_nan = em + (224u << 23);
    // Subnormals: renormalize through the FPU by subtracting the implicit bit's value.
    const F4 sub_f = (F4)(em + (113u << 23)) - F4{6.103515625e-05f, 6.103515625e-05f,
                                                 6.103515625e-05f, 6.103515625e-05f};
    const U4 sub = (U4)sub_f;
    const U4 is_special = (U4)(exp == 0x0f800000u);
    const U4 is_small = (U4)(exp == 0u);
    return (inf_nan & is_special) | (sub & is_small) | (normal & ~(is_special | is_small)) | sign;
  };
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    H8 h;
    std::memcpy(&h, in + i, 16);
    const H8 zero = {};
    // Interleave with zeros: each half becomes the low 16 bits of a 32-bit lane.
#if defined(__clang__)
    const U4 lo = (U4)__builtin_shufflevector(h, zero, 0, 8, 1, 8, 2, 8, 3, 8);
    const U4 hi = (U4)__builtin_shufflevector(h, zero, 4, 8, 5, 8, 6, 8, 7, 8);
#else
    const U4 lo = (U4)__builtin_shuffle(h, zero, H8{0, 8, 1, 8, 2, 8, 3, 8});
    const U4 hi = (U4)__builtin_shuffle(h, zero, H8{4, 8, 5, 8, 6, 8, 7, 8});
#endif
    const U4 a = convert(lo), b = convert(hi);
    std::memcpy(out + i, &a, 16);
    std::memcpy(out + i + 4, &b, 16);
  }
  for (; i < n; ++i) out[i] = HalfToFloat(in[i]);
}

// Converts n bfloat16 values to floats (exact: a 16-bit shift).
inline void Bf16ToFloatRow(const uint16_t* in, float* out, int64_t n) {
  typedef uint16_t H8 __attribute__((vector_size(16)));
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    H8 b;
    std::memcpy(&b, in + i, 16);
    const H8 zero = {};
    // Interleave below zeros: each value becomes the high 16 bits of a 32-bit lane.
#if defined(__clang__)
    const H8 lo = __builtin_shufflevector(zero, b, 0, 8, 1, 9, 2, 10, 3, 11);
    const H8 hi = __builtin_shufflevector(zero, b, 4, 12, 5, 13, 6, 14, 7, 15);
#else
    const H8 lo = __builtin_shuffle(zero, b, H8{0, 8, 1, 9, 2, 10, 3, 11});
    const H8 hi = __builtin_shuffle(zero, b, H8{4, 12, 5, 13, 6, 14, 7, 15});
#endif
    std::memcpy(out + i, &lo, 16);
    std::memcpy(out + i + 4, &hi, 16);
  }
  for (; i < n; ++i) out[i] = Bf16ToFloat(in[i]);
}

// Rounds a float through binary16 (what storing it as f16 and reading it back gives).
inline float RoundToHalf(float f) { return HalfToFloat(FloatToHalf(f)); }

}  // namespace kvcc::ir
