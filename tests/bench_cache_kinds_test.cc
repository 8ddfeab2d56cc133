// tools/bench_cache_kinds: the cache names both attention benches take map to their K and V
// storage (mixed ones included), unknown names and bad count lists are refused.
#include "tools/bench_cache_kinds.h"

#include "gtest/gtest.h"

namespace kvcc::tools {
namespace {

TEST(BenchCacheKindsTest, NamesMapToTheirStorage) {
  BenchCacheKind k;
  ASSERT_TRUE(ParseBenchCacheKind("k8v4", &k));
  EXPECT_EQ(k.name, "k8v4");
  EXPECT_EQ(k.k.dtype, ir::DType::kI8);
  EXPECT_EQ(k.v.dtype, ir::DType::kI4);
  EXPECT_EQ(k.v.granularity, ir::KvGranularity::kOnline);
  ASSERT_TRUE(ParseBenchCacheKind("fp8", &k));
  EXPECT_TRUE(k.k == k.v);
  EXPECT_EQ(k.k.dtype, ir::DType::kFP8E4M3);
  for (const char* name : {"f16", "i8", "i4", "i8_online", "i4_online", "k8v4_online",
                           "i4_kchannel"}) {
    EXPECT_TRUE(ParseBenchCacheKind(name, &k)) << name;
  }
  EXPECT_FALSE(ParseBenchCacheKind("int8", &k));
  EXPECT_FALSE(ParseBenchCacheKind("", &k));
}

TEST(BenchCacheKindsTest, CountListsKeepTheirMinimum) {
  std::vector<int> v;
  EXPECT_TRUE(ParseBenchCounts("t", "--x", "0,3,5", 0, &v));
  EXPECT_EQ(v, (std::vector<int>{0, 3, 5}));
  v.clear();
  EXPECT_FALSE(ParseBenchCounts("t", "--x", "512,0", 1, &v));
  v.clear();
  EXPECT_FALSE(ParseBenchCounts("t", "--x", "2,x", 0, &v));
}

}  // namespace
}  // namespace kvcc::tools
