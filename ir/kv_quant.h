// The KV-cache quantization arithmetic, shared by the CPU backend (the bit-exact oracle), the
// calibration pass and the CUDA kernels' host-side checks. See ir/kv_cache_scheme.h.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "ir/half.h"

namespace kvcc::ir {

// Seed's calibrated parameters from a min/max: zp = (min+max)/2, scale = (max-min)/levels with
// levels = 255 (int8) or 15 (int4). A constant tensor (max == min) would give scale 0; the
// smallest normal float keeps q = 0 and dequantizes exactly to zp instead of dividing by zero.
struct ZpScale {
  float zp;
  float scale;
};
inline ZpScale CalibratedParams(float min, float max, int levels) {
  float scale = (max - min) / static_cast<float>(levels);
  if (!(scale > 0.0f)) scale = 1.17549435e-38f;
  return {(min + max) / 2.0f, scale};
}

// fp8 e4m3 parameters from a max |x|: zp = 0, scale = absmax / 448, so the observed range maps
// onto e4m3's finite range (values beyond it saturate). A zero range keeps the smallest normal
// scale, as above.
inline ZpScale Fp8Params(float absmax) {
  float scale = absmax / 448.0f;
  if (!(scale > 0.0f)) scale = 1.17549435e-38f;
  return {0.0f, scale};
}

// The per-head fp8 scale under a layer's scale `layer_scale` (= Fp8Params(layer_absmax)): the
// layer scale over the largest power of two 2^n with head_absmax * 2^n <= layer_absmax, so the
// head's values stay finite and keep the per-layer grid's rounding (whole binades apart).
inline float Fp8HeadScale(float layer_scale, float layer_absmax, float head_absmax) {
  if (!(head_absmax > 0.0f) || !(layer_absmax > head_absmax)) return layer_scale;
  int n = static_cast<int>(std::floor(std::log2(layer_absmax / head_absmax)));
  n = std::min(std::max(n, 0), 100);
  // log2's rounding can overshoot by one at an exact power of two.
  while (n > 0 && std::ldexp(head_absmax, n) > layer_absmax) --n;
  const float scale = std::ldexp(layer_scale, -n);
  return scale > 0.0f ? scale : layer_scale;
}

// Centred fp8 e4m3 parameters from a range: zp = (min+max)/2, scale = room * (max-min)/2 / 448,
// so values within `room` half-widths of the midpoint stay finite. A zero range keeps the
// smallest normal scale.
inline ZpScale Fp8CenteredParams(float min, float max, float room) {
  float scale = room * ((max - min) / 2.0f) / 448.0f;
  if (!(scale > 0.0f)) scale = 1.17549435e-38f;
  return {(min + max) / 2.0f, scale};
}

// Symmetric-range quantization of the calibrated schemes: [-128,127] (i8) or [-8,7] (i4).
inline int QuantizeCalibrated(float f, float zp, float scale, int qmin, int qmax) {
  float q = std::nearbyint((f - zp) / scale);
  return static_cast<int>(std::min(std::max(q, static_cast<float>(qmin)),
                                   static_cast<float>(qmax)));
}
inline float Dequantize(int q, float zp, float scale) { return static_cast<float>(q) * scale + zp; }

// Online (LMDeploy >= 0.4) per-token, per-head: zero = min, scale = (max-min)/(2^bits-1),
// q in [0, 2^bits-1].
inline int QuantizeOnline(float f, float zero, float scale, int bits) {
  float q = std::nearbyint((f - zero) / scale);
  return static_cast<int>(std::min(std::max(q, 0.0f), static_cast<float>((1 << bits) - 1)));
}

// Online parameters as stored in the cache: scale = (max-min)/(2^bits-1) and zero = min, each
// rounded to fp16 (round-to-nearest-even). Quantization divides by these stored values, so a
// reader that only sees the cache dequantizes exactly what the writer meant. A zero-width
// range gets the smallest positive fp16 scale instead of a division by zero; ranges beyond fp16 clamp
// to +-65504 so the stored pair is always finite.
struct OnlineHalfParams {
  uint16_t scale;
  uint16_t zero;
};
inline OnlineHalfParams OnlineParams(float min, float max, int bits) {
  const float levels = static_cast<float>((1 << bits) - 1);
  const float max_half = 65504.0f;
  float scale = std::min((max - min) / levels, max_half);
  uint16_t s = FloatToHalf(scale);
  if (!(HalfToFloat(s) > 0.0f)) s = 0x0001;  // smallest subnormal, 2^-24
  const float zero = std::min(std::max(min, -max_half), max_half);
  return {s, FloatToHalf(zero)};
}

}  // namespace kvcc::ir
