// ir/fp8_e4m3.h against an exhaustive nearest-code search and the format's fixed points.
#include "ir/fp8_e4m3.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "gtest/gtest.h"

namespace kvcc::ir {
namespace {

// Value of a finite code straight from the format definition.
double CodeValue(int code) {
  const int e = (code >> 3) & 0xf, m = code & 7;
  const double mag = e == 0 ? m / 8.0 * std::ldexp(1.0, -6) : (1 + m / 8.0) * std::ldexp(1.0, e - 7);
  return (code & 0x80) ? -mag : mag;
}

// Nearest finite code by search, ties to the even code, saturating.
uint8_t Nearest(float x) {
  const double a = std::fabs(double(x));
  int best = 0;
  double best_d = std::numeric_limits<double>::infinity();
  for (int code = 0; code < 0x7f; ++code) {
    const double d = std::fabs(CodeValue(code) - a);
    if (d < best_d || (d == best_d && code % 2 == 0)) {
      best = code;
      best_d = d;
    }
  }
  return static_cast<uint8_t>(best | (std::signbit(x) ? 0x80 : 0));
}

TEST(Fp8E4M3Test, EveryFiniteCodeDecodesAndRoundTrips) {
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7f) == 0x7f) {
      EXPECT_TRUE(std::isnan(Fp8E4M3ToFloat(static_cast<uint8_t>(code))));
      continue;
    }
    const float f = Fp8E4M3ToFloat(static_cast<uint8_t>(code));
    EXPECT_EQ(double(f), CodeValue(code)) << code;
    EXPECT_EQ(FloatToFp8E4M3(f), code) << code;
  }
}

TEST(Fp8E4M3Test, RoundsToNearestEvenLikeTheSearch) {
  // Midpoints between neighbouring codes (the ties) and their float neighbours, then random
  // values across the whole range, subnormals included.
  for (int code = 0; code < 0x7e; ++code) {
    const float mid = static_cast<float>((CodeValue(code) + CodeValue(code + 1)) / 2);
    for (float x : {mid, std::nextafter(mid, 0.f), std::nextafter(mid, 1e9f)}) {
      EXPECT_EQ(FloatToFp8E4M3(x), Nearest(x)) << x;
      EXPECT_EQ(FloatToFp8E4M3(-x), Nearest(-x)) << -x;
    }
  }
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> exponent(-14.f, 10.f), sign(-1.f, 1.f);
  for (int i = 0; i < 200000; ++i) {
    const float x = std::copysign(std::exp2(exponent(rng)), sign(rng));
    ASSERT_EQ(FloatToFp8E4M3(x), Nearest(x)) << x;
  }
}

TEST(Fp8E4M3Test, SaturatesFiniteAndKeepsNan) {
  EXPECT_EQ(FloatToFp8E4M3(448.f), 0x7e);
  EXPECT_EQ(FloatToFp8E4M3(1e6f), 0x7e);
  EXPECT_EQ(FloatToFp8E4M3(std::numeric_limits<float>::infinity()), 0x7e);
  EXPECT_EQ(FloatToFp8E4M3(-std::numeric_limits<float>::infinity()), 0xfe);
  EXPECT_EQ(FloatToFp8E4M3(std::numeric_limits<float>::quiet_NaN()) & 0x7f, 0x7f);
  EXPECT_EQ(FloatToFp8E4M3(0.f), 0x00);
  EXPECT_EQ(FloatToFp8E4M3(-0.f), 0x80);
  EXPECT_EQ(FloatToFp8E4M3(std::ldexp(1.f, -10)), 0x00);                        // tie to 0
  EXPECT_EQ(FloatToFp8E4M3(std::nextafter(std::ldexp(1.f, -10), 1.f)), 0x01);  // 2^-9
  EXPECT_EQ(Fp8E4M3ToFloat(0x01), std::ldexp(1.f, -9));
}

}  // namespace
}  // namespace kvcc::ir
