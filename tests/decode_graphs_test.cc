// The host side of replayed decode steps (runtime/decode_graphs.h): which bucket and context
// band a step takes, and how its inputs are packed, padded rows included.
#include "runtime/decode_graphs.h"

#include <vector>

#include "gtest/gtest.h"

namespace kvcc::runtime {
namespace {

TEST(DecodeGraphsTest, BucketsDoubleToEightThenStepByEight) {
  EXPECT_EQ(DecodeBuckets(1), (std::vector<int>{1}));
  EXPECT_EQ(DecodeBuckets(3), (std::vector<int>{1, 2, 4}));
  EXPECT_EQ(DecodeBuckets(8), (std::vector<int>{1, 2, 4, 8}));
  EXPECT_EQ(DecodeBuckets(30), (std::vector<int>{1, 2, 4, 8, 16, 24, 32}));
  EXPECT_EQ(DecodeBucketFor(1, 64), 1);
  EXPECT_EQ(DecodeBucketFor(3, 64), 4);
  EXPECT_EQ(DecodeBucketFor(8, 64), 8);
  EXPECT_EQ(DecodeBucketFor(9, 64), 16);
  EXPECT_EQ(DecodeBucketFor(57, 64), 64);
  EXPECT_EQ(DecodeBucketFor(65, 64), -1);
  EXPECT_EQ(DecodeBucketFor(0, 64), -1);
  EXPECT_EQ(DecodeBucketFor(3, 3), 4);  // the last bucket may pass the limit
}

TEST(DecodeGraphsTest, BandsCoverTheLengthWithinAnEighth) {
  EXPECT_EQ(DecodeContextBand(1), 256);
  EXPECT_EQ(DecodeContextBand(256), 256);
  EXPECT_EQ(DecodeContextBand(257), 512);
  EXPECT_EQ(DecodeContextBand(2048), 2048);
  EXPECT_EQ(DecodeContextBand(2049), 2304);  // steps of 256 up to 4096
  EXPECT_EQ(DecodeContextBand(5000), 5120);  // steps of 512 up to 8192
  EXPECT_EQ(DecodeContextBand(9000), 9216);  // steps of 1024 up to 16384
  for (int64_t len = 1; len < 70000; len += 97) {
    const int64_t band = DecodeContextBand(len);
    EXPECT_GE(band, len);
    EXPECT_LE(band - len, std::max<int64_t>(256, len / 8)) << len;
    EXPECT_EQ(DecodeContextBand(band), band);
  }
}

TEST(DecodeGraphsTest, PacksRealRowsAndPadsTheRestToWriteAndReadNothing) {
  BlockPool pool(16, 4);
  ASSERT_TRUE(pool.AddSession(7).ok());
  ASSERT_TRUE(pool.AddSession(9).ok());
  ASSERT_TRUE(pool.Reserve({{7, 6}, {9, 9}}).ok());
  const std::vector<int32_t> t7 = **pool.Table(7), t9 = **pool.Table(9);
  ASSERT_EQ(t7.size(), 2u);
  ASSERT_EQ(t9.size(), 3u);
  StepBatch b;
  b.sessions = {9, 7};
  b.positions = {8, 5};
  b.ComputeSeqLens();
  const DecodeInputLayout l = DecodeInputLayout::For(4, 256, 4);
  EXPECT_EQ(l.table_stride, 64);
  EXPECT_EQ(l.total, 4 * 4 + 4 * 64);
  std::vector<int32_t> out(l.total, 12345);
  ASSERT_TRUE(PackDecodeInputs({31, 32}, b, pool, l, 256, out.data()).ok());
  EXPECT_EQ(std::vector<int32_t>(out.begin() + l.ids, out.begin() + l.ids + 4),
            (std::vector<int32_t>{31, 32, 0, 0}));
  EXPECT_EQ(std::vector<int32_t>(out.begin() + l.positions, out.begin() + l.positions + 4),
            (std::vector<int32_t>{8, 5, 0, 0}));
  EXPECT_EQ(std::vector<int32_t>(out.begin() + l.slots, out.begin() + l.slots + 4),
            (std::vector<int32_t>{t9[2] * 4, t7[1] * 4 + 1, -1, -1}));
  EXPECT_EQ(std::vector<int32_t>(out.begin() + l.lens, out.begin() + l.lens + 4),
            (std::vector<int32_t>{9, 6, 0, 0}));
  for (int r = 0; r < 4; ++r) {
    const std::vector<int32_t>& t = r == 0 ? t9 : t7;
    for (int c = 0; c < l.table_stride; ++c) {
      const int32_t want = r < 2 && c < static_cast<int>(t.size()) ? t[c] : 0;
      EXPECT_EQ(out[l.tables + r * l.table_stride + c], want) << r << "," << c;
    }
  }
}

TEST(DecodeGraphsTest, PositionsOutsideTheReservationOrBandAreErrors) {
  BlockPool pool(16, 4);
  ASSERT_TRUE(pool.AddSession(1).ok());
  ASSERT_TRUE(pool.Reserve(1, 4).ok());
  const DecodeInputLayout l = DecodeInputLayout::For(2, 256, 4);
  std::vector<int32_t> out(l.total);
  StepBatch b;
  b.sessions = {1};
  b.positions = {4};
  b.ComputeSeqLens();
  absl::Status s = PackDecodeInputs({5}, b, pool, l, 256, out.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(s.message().find("session 1"), std::string::npos) << s;
  b.sessions = {2};
  b.positions = {0};
  EXPECT_FALSE(PackDecodeInputs({5}, b, pool, l, 256, out.data()).ok());
  b.sessions = {1, 1, 1};
  b.positions = {0, 1, 2};
  b.ComputeSeqLens();
  EXPECT_EQ(PackDecodeInputs({5, 5, 5}, b, pool, l, 256, out.data()).code(),
            absl::StatusCode::kInvalidArgument);  // more rows than the bucket
}

}  // namespace
}  // namespace kvcc::runtime
