// fp16 / bf16 conversions against the compiler's own _Float16 (an independent
// round-to-nearest-even implementation), an exhaustive round trip, and the vectorized and
// F16C-dispatched row converters against the scalar ones for every half.
#include "ir/half.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/half_convert.h"

namespace kvcc::ir {
namespace {

TEST(HalfTest, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(f)))) << h;
      continue;
    }
    EXPECT_EQ(FloatToHalf(f), h) << "half bits " << h;
  }
}

TEST(HalfTest, DispatchedConversionEqualsScalarForEveryHalf) {
  std::vector<uint16_t> all(65536 + 5);
  for (uint32_t h = 0; h < all.size(); ++h) all[h] = static_cast<uint16_t>(h);
  std::vector<float> row(all.size());
  runtime::ConvertHalfRow(all.data(), row.data(), static_cast<int64_t>(all.size()));
  for (size_t h = 0; h < all.size(); ++h) {
    const float want = HalfToFloat(all[h]);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(row[h])) << h;  // F16C quiets signaling NaNs; still NaN
    } else {
      EXPECT_EQ(std::memcmp(&row[h], &want, 4), 0) << "half bits " << all[h];
    }
  }
}

TEST(HalfTest, Bf16RowConversionEqualsScalar) {
  std::vector<uint16_t> all(65536);
  for (uint32_t h = 0; h < 65536; ++h) all[h] = static_cast<uint16_t>(h);
  std::vector<float> row(65536);
  Bf16ToFloatRow(all.data(), row.data(), 65535);  // odd length: the scalar tail too
  for (uint32_t h = 0; h < 65535; ++h) {
    const float want = Bf16ToFloat(static_cast<uint16_t>(h));
    EXPECT_EQ(std::memcmp(&row[h], &want, 4), 0) << "bf16 bits " << h;
  }
}

TEST(HalfTest, RowConversionEqualsScalarForEveryHalf) {
  std::vector<uint16_t> all(65536);
  for (uint32_t h = 0; h < 65536; ++h) all[h] = static_cast<uint16_t>(h);
  std::vector<float> row(65536);
  // Converted in uneven pieces so both the 8-wide body and the scalar tail are covered.
  for (int64_t begin = 0; begin < 65536; begin += 1000) {
    const int64_t n = std::min<int64_t>(1000 - (begin / 1000) % 7, 65536 - begin);
    HalfToFloatRow(all.data() + begin, row.data() + begin, n);
    if (n < 1000) HalfToFloatRow(all.data() + begin + n, row.data() + begin + n, std::min<int64_t>(1000, 65536 - begin) - n);
  }
  for (uint32_t h = 0; h < 65536; ++h) {
    const float want = HalfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(row[h])) << h;
    } else {
      EXPECT_EQ(std::memcmp(&row[h], &want, 4), 0) << "half bits " << h;
    }
  }
}

#if defined(__FLT16_MAX__)
TEST(HalfTest, MatchesCompilerFloat16OnRandomAndEdgeFloats) {
  std::mt19937 rng(1234);
  auto check = [](float f) {
    const _Float16 c = static_cast<_Float16>(f);
    uint16_t want;
    std::memcpy(&want, &c, 2);
    if (std::isnan(f)) return;
    ASSERT_EQ(FloatToHalf(f), want) << "float " << f;
    ASSERT_EQ(HalfToFloat(want), static_cast<float>(c));
  };
  for (int i = 0; i < 2000000; ++i) {
    uint32_t bits = rng();
    float f;
    std::memcpy(&f, &bits, 4);
    check(f);
  }
  // Values near the half range: ties, subnormals, overflow threshold.
  for (uint32_t bits = 0x33000000u - 64; bits < 0x38800000u + 64; bits += 997) {
    float f;
    std::memcpy(&f, &bits, 4);
    check(f);
    check(-f);
  }
  for (float f : {65504.0f, 65519.99f, 65520.0f, 1e9f, 2.9802322e-08f, 5.9604645e-08f,
                  8.940697e-08f, 6.1035156e-05f, 1.0009765625f, 1.00048828125f, 0.0f, -0.0f,
                  INFINITY, -INFINITY}) {
    check(f);
  }
}
#endif

TEST(HalfTest, Bf16RoundsToNearestEven) {
  std::mt19937 rng(99);
  for (int i = 0; i < 1000000; ++i) {
    const uint32_t bits = rng();
    float f;
    std::memcpy(&f, &bits, 4);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(f))));
      continue;
    }
    // The two bf16 neighbours of f; the nearer wins, ties go to the even one.
    const uint16_t lo = static_cast<uint16_t>(bits >> 16);
    const uint16_t hi = static_cast<uint16_t>(lo + 1);
    const double dlo = std::fabs(static_cast<double>(Bf16ToFloat(lo)) - f);
    // Past the largest finite bf16 the upper neighbour is infinity, which rounding treats as
    // 2^128 (the next value with an unbounded exponent).
    const double upper = std::isinf(Bf16ToFloat(hi)) ? std::copysign(std::ldexp(1.0, 128), f)
                                                     : static_cast<double>(Bf16ToFloat(hi));
    const double dhi = std::fabs(upper - f);
    uint16_t want = dlo < dhi ? lo : dhi < dlo ? hi : ((lo & 1) ? hi : lo);
    if ((bits & 0xffffu) == 0) want = lo;
    ASSERT_EQ(FloatToBf16(f), want) << "float bits " << bits;
  }
}

}  // namespace
}  // namespace kvcc::ir
