// OCP fp8 e4m3 ("FN": bias 7, no infinities, 0x7f/0xff NaN, largest finite 448) <-> float, in
// integer arithmetic so the CPU backend and the CUDA cache-write kernel (which repeats this code
// in codegen/kvcc_common.cuh) round every value to the same byte.
#pragma once

#include <cstdint>

#include "ir/half.h"

namespace kvcc::ir {

inline constexpr float kFp8E4M3Max = 448.0f;

// Round to nearest, ties to even; saturating: finite values beyond +-448 and infinities give
// +-448 (a scaled cache value never becomes NaN), NaN gives NaN (0x7f with the sign).
inline uint8_t FloatToFp8E4M3(float f) {
  const uint32_t u = FloatBits(f);
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7fu;
  if (abs >= 0x43e00000u) return sign | 0x7eu;  // >= 448
  if (abs < 0x3c800000u) {
    // Below the smallest normal 2^-6: a multiple of 2^-9 (subnormal), value / 2^-9 rounded.
    if (abs < 0x3a800000u) return sign;  // <= 2^-10 rounds to zero (2^-10 ties to 0)
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 141u - exp;  // 21..24 (value = mant * 2^(exp - 150))
    const uint32_t rest = mant & ((1u << shift) - 1u);
    const uint32_t half_point = 1u << (shift - 1u);
    uint32_t q = mant >> shift;
    if (rest > half_point || (rest == half_point && (q & 1u))) ++q;
    return sign | static_cast<uint8_t>(q);
  }
  // Normal: rebias 127 -> 7 and round the 20 dropped mantissa bits; a carry bumps the exponent
  // and never reaches the NaN code since the input is below 448.
  uint32_t q = (abs >> 20) - (120u << 3);
  const uint32_t rest = abs & 0xfffffu;
  if (rest > 0x80000u || (rest == 0x80000u && (q & 1u))) ++q;
  return sign | static_cast<uint8_t>(q);
}

// Exact. The kernels decode the same way: the seven magnitude bits placed at the top of a
// float's exponent/mantissa, times 2^120 (which also covers the subnormals).
inline float Fp8E4M3ToFloat(uint8_t q) {
  if ((q & 0x7fu) == 0x7fu) return BitsFloat(0x7fc00000u | (static_cast<uint32_t>(q & 0x80u) << 24));
  const uint32_t bits = (static_cast<uint32_t>(q & 0x7fu) << 20) |
                        (static_cast<uint32_t>(q & 0x80u) << 24);
  return BitsFloat(bits) * 1.329227995784915872903807060280344576e36f;  // 2^120
}

}  // namespace kvcc::ir
