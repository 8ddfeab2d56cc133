// The block_channel (KIVI, `int4-kivi`) K cache: f16 rows until a block's last slot is written,
// then per-channel int4 over the block equal bit for bit to an emulation of the formula in
// ir/kv_cache_scheme.h; the sink block kept in f16; rollback into a quantized block; staging
// exhaustion, reclaim from closed sessions, and the pool's byte accounting.
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "ir/half.h"
#include "passes/kv_quant_scheme.h"
#include "runtime/kv_cache.h"
#include "tests/test_util.h"

namespace kvcc::runtime {
namespace {

using ir::DType;
using ir::KvGranularity;

constexpr int kHeads = 2, kDim = 8, kBlock = 4;

KvCacheSpec KiviSpec(int64_t blocks) {
  KvCacheSpec spec;
  ir::KvCacheScheme s;
  s.SetPart(KvPart::kKey, {DType::kI4, KvGranularity::kBlockChannel});
  s.SetPart(KvPart::kValue, {DType::kI4, KvGranularity::kOnline});
  spec.layout.num_layers = 1;
  spec.layout.kv_heads = kHeads;
  spec.layout.head_dim = kDim;
  spec.layout.block_size = kBlock;
  spec.layout.num_blocks = blocks;
  spec.layout.SetStorage(s);
  spec.layout.SetStagingFor(blocks);
  spec.schemes.push_back(s);
  return spec;
}

float H(float x) { return ir::HalfToFloat(ir::FloatToHalf(x)); }

// Rows [tokens][kHeads * kDim] with a large outlier channel, as real K heads have.
std::vector<std::vector<float>> Rows(int tokens, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<std::vector<float>> rows(tokens, std::vector<float>(kHeads * kDim));
  for (auto& r : rows) {
    for (int i = 0; i < kHeads * kDim; ++i) r[i] = n(rng) * (i % kDim == 3 ? 20.0f : 1.0f);
  }
  return rows;
}

// The per-channel int4 dequantization of `block`'s rows [kBlock] of head h.
std::vector<float> Emulate(const std::vector<std::vector<float>>& rows, int first, int h) {
  std::vector<float> out(kBlock * kDim);
  for (int j = 0; j < kDim; ++j) {
    float lo = INFINITY, hi = -INFINITY;
    for (int r = 0; r < kBlock; ++r) {
      lo = std::min(lo, H(rows[first + r][h * kDim + j]));
      hi = std::max(hi, H(rows[first + r][h * kDim + j]));
    }
    const float scale = H((hi - lo) / 15.0f), zero = H(lo);
    for (int r = 0; r < kBlock; ++r) {
      const float q = std::min(
          15.0f, std::max(0.0f, std::nearbyint((H(rows[first + r][h * kDim + j]) - zero) / scale)));
      out[r * kDim + j] = q * scale + zero;
    }
  }
  return out;
}

std::vector<float> ReadK(const KvCache& c, int64_t session, int position, int h) {
  std::vector<float> out(kDim);
  const int32_t block = (**c.blocks().Table(session))[position / kBlock];
  c.ReadRow(0, KvPart::kKey, block, h, position % kBlock, out.data());
  return out;
}

void Write(KvCache* c, int64_t session, int position, const std::vector<float>& row) {
  KVCC_ASSERT_OK(c->WriteToken(0, session, position, row.data(), row.data()));
}

TEST(KvCacheKiviTest, SchemeIsNamedAndNeedsNoCalibration) {
  KVCC_ASSERT_OK_AND_ASSIGN(s, passes::ParseKvQuantScheme("int4-kivi"));
  EXPECT_EQ(passes::KvQuantSchemeName(s), "int4-kivi");
  EXPECT_FALSE(passes::NeedsCalibration(s));
  EXPECT_TRUE(passes::SchemeStorage(s, ir::KvPart::kKey).block_channel());
  EXPECT_TRUE(passes::SchemeStorage(s, ir::KvPart::kValue).online());
}

TEST(KvCacheKiviTest, SinkAndUnfilledBlocksStayF16FilledBlocksEqualTheFormula) {
  auto c = *KvCache::CreateHost(KiviSpec(32));
  KVCC_ASSERT_OK(c->blocks().AddSession(1));
  KVCC_ASSERT_OK(c->blocks().Reserve(1, 14));
  const auto rows = Rows(14, 3);
  for (int p = 0; p < 14; ++p) Write(c.get(), 1, p, rows[p]);
  for (int h = 0; h < kHeads; ++h) {
    for (int p : {0, 3, 12, 13}) {  // the sink block and the unfilled last block
      const auto got = ReadK(*c, 1, p, h);
      for (int j = 0; j < kDim; ++j) EXPECT_EQ(got[j], H(rows[p][h * kDim + j])) << p << " " << j;
    }
    for (int first : {4, 8}) {
      const auto want = Emulate(rows, first, h);
      for (int r = 0; r < kBlock; ++r) {
        const auto got = ReadK(*c, 1, first + r, h);
        for (int j = 0; j < kDim; ++j) EXPECT_EQ(got[j], want[r * kDim + j]) << first + r;
      }
    }
  }
  // Two staging blocks in use (sink and unfilled); the quantized ones have none.
  const auto& table = **c->blocks().Table(1);
  EXPECT_GE(c->StagingOf(0, table[0]), 0);
  EXPECT_LT(c->StagingOf(0, table[1]), 0);
  EXPECT_GE(c->StagingOf(0, table[3]), 0);
}

TEST(KvCacheKiviTest, RewritingInsideAQuantizedBlockReopensIt) {
  auto c = *KvCache::CreateHost(KiviSpec(32));
  KVCC_ASSERT_OK(c->blocks().AddSession(1));
  KVCC_ASSERT_OK(c->blocks().Reserve(1, 8));
  auto rows = Rows(8, 4);
  for (int p = 0; p < 8; ++p) Write(c.get(), 1, p, rows[p]);
  // The rows kept from the quantized block, as attention read them.
  std::vector<std::vector<float>> now = rows;
  for (int r = 4; r < 6; ++r) {
    for (int i = 0; i < kHeads * kDim; ++i) now[r][i] = ReadK(*c, 1, r, i / kDim)[i % kDim];
  }
  const auto fresh = Rows(8, 9);
  Write(c.get(), 1, 6, fresh[6]);  // roll back to position 6: the block reopens
  EXPECT_EQ(ReadK(*c, 1, 4, 1)[5], H(now[4][kDim + 5]));
  EXPECT_EQ(ReadK(*c, 1, 6, 0)[0], H(fresh[6][0]));
  Write(c.get(), 1, 7, fresh[7]);
  now[6] = fresh[6];
  now[7] = fresh[7];
  for (int h = 0; h < kHeads; ++h) {  // sealed again from the kept and the new rows
    const auto want = Emulate(now, 4, h);
    for (int r = 0; r < kBlock; ++r) {
      const auto got = ReadK(*c, 1, 4 + r, h);
      for (int j = 0; j < kDim; ++j) EXPECT_EQ(got[j], want[r * kDim + j]) << 4 + r;
    }
  }
}

TEST(KvCacheKiviTest, StagingExhaustsCleanlyAndIsReclaimedFromClosedSessions) {
  auto spec = KiviSpec(2 * kKiviBlocksPerStaging);
  ASSERT_EQ(spec.layout.staging_blocks, 2);
  auto c = *KvCache::CreateHost(spec);
  const auto rows = Rows(6, 5);
  KVCC_ASSERT_OK(c->blocks().AddSession(1));
  KVCC_ASSERT_OK(c->blocks().Reserve(1, 6));
  for (int p = 0; p < 6; ++p) Write(c.get(), 1, p, rows[p]);  // sink + unfilled block
  KVCC_ASSERT_OK(c->blocks().AddSession(2));
  KVCC_ASSERT_OK(c->blocks().Reserve(2, 1));
  auto s = c->WriteToken(0, 2, 0, rows[0].data(), rows[0].data());
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("staging"), std::string::npos) << s;
  KVCC_ASSERT_OK(c->blocks().RemoveSession(1));
  Write(c.get(), 2, 0, rows[1]);
  EXPECT_EQ(ReadK(*c, 2, 0, 1)[2], H(rows[1][kDim + 2]));
}

TEST(KvCacheKiviTest, PoolBytesCountParamsAndStaging) {
  const auto l = KiviSpec(2 * kKiviBlocksPerStaging).layout;
  const int64_t blocks = 2 * kKiviBlocksPerStaging;
  const int64_t k = blocks * (kHeads * kBlock * kDim / 2 + kHeads * kDim * 4);  // codes + channel pairs
  const int64_t v = blocks * (kHeads * kBlock * kDim / 2 + kHeads * kBlock * 4);  // codes + token pairs
  const int64_t staging = 2 * kHeads * kBlock * kDim * 2;
  EXPECT_EQ(l.TotalBytes(), k + v + staging);
}

// A small pool still gives every session it is sized for its sink and its unfilled block (a
// 512-token kvcompare pool of 8 blocks had one staging block and refused the second block).
TEST(KvCacheKiviTest, SmallPoolsHoldTwoStagingBlocksPerSession) {
  KvCacheLayout l;
  l.block_channel = true;
  l.SetStagingFor(8);
  EXPECT_EQ(l.staging_blocks, 2);
  l.SetStagingFor(8, 2 * 4);
  EXPECT_EQ(l.staging_blocks, 8);
  l.SetStagingFor(1, 2);
  EXPECT_EQ(l.staging_blocks, 1);
  l.SetStagingFor(64 * kKiviBlocksPerStaging, 2);
  EXPECT_EQ(l.staging_blocks, 64);
}

}  // namespace
}  // namespace kvcc::runtime
