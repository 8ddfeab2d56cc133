// KV-cache pool sizing from free GPU memory (--cache-max-entry-count), on stories260K's cache
// shape: the fraction applies to what is left after the weights, in whole blocks, and budgets
// that cannot hold the weights or one block are refused with the numbers.
#include "runtime/kv_pool_budget.h"

#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace kvcc::runtime {
namespace {

TEST(KvPoolBudgetTest, FractionOfTheMemoryLeftAfterTheWeights) {
  auto m = kvcc::testing::LoadStories260K();
  ASSERT_NE(m, nullptr);
  // stories260K: 5 layers, 4 kv heads x 8, f16 cache: 2 * 5 * 4 * 8 * 2 bytes per token.
  const int64_t per_token = 2 * 5 * 4 * 8 * 2;
  const int64_t weights = DeviceWeightBytes(*m);
  int64_t f32_bytes = 0;
  for (const ir::Value* w : m->graph.weights()) f32_bytes += w->type.NumBytes();
  EXPECT_EQ(weights, f32_bytes + f32_bytes / 2);  // f32 checkpoint: plus its f16 GEMM copy
  const int64_t free_bytes = weights + 1000 * 64 * per_token;
  KVCC_ASSERT_OK_AND_ASSIGN(b, KvPoolFromFreeMemory(*m, 0.5, 64, free_bytes, false));
  EXPECT_EQ(b.bytes_per_token, per_token);
  EXPECT_EQ(b.tokens, 500 * 64);
  EXPECT_EQ(b.pool_bytes(), 500 * 64 * per_token);
  // Read after the upload, the same free memory leaves more for the cache.
  KVCC_ASSERT_OK_AND_ASSIGN(after, KvPoolFromFreeMemory(*m, 0.5, 64, free_bytes, true));
  EXPECT_GT(after.tokens, b.tokens);
  EXPECT_EQ(after.tokens % 64, 0);
}

TEST(KvPoolBudgetTest, BudgetsThatCannotWorkAreRefusedWithTheNumbers) {
  auto m = kvcc::testing::LoadStories260K();
  ASSERT_NE(m, nullptr);
  const int64_t weights = DeviceWeightBytes(*m);
  auto none = KvPoolFromFreeMemory(*m, 0.8, 64, weights / 2, false);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(none.status().message().find("do not fit"), absl::string_view::npos);
  auto tiny = KvPoolFromFreeMemory(*m, 0.01, 64, weights + 1000, false);
  ASSERT_FALSE(tiny.ok());
  EXPECT_NE(tiny.status().message().find("no KV-cache block"), absl::string_view::npos);
  for (double bad : {0.0, -0.5, 1.5}) {
    EXPECT_EQ(KvPoolFromFreeMemory(*m, bad, 64, weights * 4, false).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

}  // namespace
}  // namespace kvcc::runtime
