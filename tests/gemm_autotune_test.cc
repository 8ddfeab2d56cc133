// runtime/cuda/gemm_autotune: the GEMM shapes and token buckets the autotuner measures (CPU),
// and on a GPU that every entry it stores is never slower than the heuristic it was measured
// against, tuned ones by more than the margin.
#include "runtime/cuda/gemm_autotune.h"

#include <set>
#include <tuple>

#include "codegen/ops_kernels.h"
#include "gtest/gtest.h"
#include "pipeline/model_opener.h"
#include "tests/gpu_skip.h"
#include "tests/test_util.h"

namespace kvcc::runtime {
namespace {

std::set<std::tuple<int64_t, int64_t>> Pairs(const std::vector<GemmShape>& shapes) {
  std::set<std::tuple<int64_t, int64_t>> out;
  for (const GemmShape& s : shapes) out.insert({s.n, s.k});
  return out;
}

// stories260K: hidden 64, 8 heads / 4 KV heads of 8, ffn 172, vocab 512, f32 weights (run as
// f16). Unfused: q and o, k and v, gate and up share shapes; fused: qkv and gate_up.
TEST(GemmAutotuneTest, PlansEachDistinctLinearShapeOnce) {
  auto module = testing::LoadStories260K();
  ASSERT_NE(module, nullptr);
  std::vector<GemmShape> shapes = PlanGemmShapes(*module);
  EXPECT_EQ(Pairs(shapes), (std::set<std::tuple<int64_t, int64_t>>{
                               {64, 64}, {32, 64}, {172, 64}, {64, 172}, {512, 64}}));
  EXPECT_EQ(shapes.size(), 5u);
  for (const GemmShape& s : shapes) EXPECT_EQ(s.dtype, ir::DType::kF16);
  ASSERT_TRUE(pipeline::LowerForExecution(*module, testing::SourcePath("models/stories260K"),
                                          pipeline::LowerOptions{})
                  .ok());
  shapes = PlanGemmShapes(*module);
  EXPECT_EQ(Pairs(shapes), (std::set<std::tuple<int64_t, int64_t>>{
                               {128, 64}, {64, 64}, {344, 64}, {64, 172}, {512, 64}}));
}

TEST(GemmAutotuneTest, BucketsAreTheDecodeBatchesAndThePrefillChunk) {
  EXPECT_EQ(GemmTokenBuckets(64, 512), (std::vector<int64_t>{1, 2, 4, 8, 16, 32, 64, 512}));
  EXPECT_EQ(GemmTokenBuckets(48, 512), (std::vector<int64_t>{1, 2, 4, 8, 16, 32, 48, 512}));
  EXPECT_EQ(GemmTokenBuckets(1, 256), (std::vector<int64_t>{1, 256}));
  EXPECT_EQ(GemmTokenBuckets(8, 4), (std::vector<int64_t>{1, 2, 4, 8}));
}

TEST(GemmAutotuneTest, RefusesBadOptions) {
  KernelTuning t;
  GemmAutotuneOptions o;
  o.candidates = 0;
  EXPECT_FALSE(AutotuneGemms({}, o, &t).ok());
  o = {};
  o.max_batch = 0;
  EXPECT_FALSE(AutotuneGemms({}, o, &t).ok());
}

TEST(GemmAutotuneTest, StoredChoicesAreNeverSlowerThanTheHeuristic) {
  SKIP_WITHOUT_GPU();
  KernelTuning t;
  GemmAutotuneOptions o;
  o.max_batch = 8;
  o.prefill_chunk = 256;
  const std::vector<GemmShape> shapes = {{1024, 512, ir::DType::kF16},
                                         {512, 2048, ir::DType::kBF16}};
  ASSERT_TRUE(AutotuneGemms(shapes, o, &t).ok());
  EXPECT_GT(t.cublaslt_version, 0);
  ASSERT_EQ(t.gemm.size(), shapes.size() * GemmTokenBuckets(8, 256).size());
  for (const GemmTuning& g : t.gemm) {
    EXPECT_GT(g.candidates, 0);
    EXPECT_GT(g.heuristic_us, 0);
    if (g.heuristic) {
      EXPECT_EQ(g.us, g.heuristic_us);
    } else {
      EXPECT_LT(g.us, g.heuristic_us * (1 - o.margin)) << g.m << "x" << g.n << "x" << g.k;
    }
    // The decode GEMV is timed up to its token limit and chosen only where it wins.
    EXPECT_EQ(g.gemv_timed, g.m <= codegen::kGemvMaxTokens) << g.m;
    if (!g.gemv.empty()) {
      EXPECT_LT(g.gemv_us, g.us) << g.m << "x" << g.n << "x" << g.k;
    }
  }
}

}  // namespace
}  // namespace kvcc::runtime
