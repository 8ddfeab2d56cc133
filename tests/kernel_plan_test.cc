// runtime/cuda/kernel_plan: the kernels the CUDA backend needs for stories260K, enumerated
// without a GPU; arch names; tuning applied to the plan, and tuning from another device kind
// dropped.
#include "runtime/cuda/kernel_plan.h"

#include <set>

#include "absl/strings/match.h"
#include "pipeline/model_opener.h"
#include "tests/awq_checkpoint.h"
#include "tests/test_util.h"

namespace kvcc::runtime {
namespace {

TEST(KernelPlanTest, ParsesArchNames) {
  auto a = ParseGpuArch("sm_90a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->arch, 90);
  EXPECT_TRUE(a->arch_specific);
  EXPECT_EQ(GpuArchName(*a), "sm_90a");
  auto b = ParseGpuArch("sm_80");
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->arch_specific);
  for (const char* bad : {"sm_80a", "sm_75", "90", "sm_", "sm_9x", "compute_90"}) {
    auto s = ParseGpuArch(bad).status();
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_TRUE(absl::StrContains(s.message(), bad)) << s;
  }
}

// Attention kernels are planned for the activations the backend runs every model with, f16,
// a model with 4-bit linears included (their kernels read and write f16 too), so an artifact
// holds exactly the kernels its engine loads.
TEST(KernelPlanTest, AttentionIoIsTheModelActivationDType) {
  auto dense = pipeline::LoadForExecution(testing::SourcePath("models/stories260K"), {});
  ASSERT_TRUE(dense.ok()) << dense.status();
  KVCC_ASSERT_OK_AND_ASSIGN(awq, testing::WriteAwqCheckpoint("models/configs/llama-hd128-gqa.json",
                                                             testing::TempDir("plan_awq"), 64, 3));
  auto quantized = pipeline::LoadForExecution(awq, {});
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  for (const auto* m : {&*dense, &*quantized}) {
    auto configs = PlanAttentionConfigs(**m, 64, {});
    ASSERT_TRUE(configs.ok()) << configs.status();
    ASSERT_FALSE(configs->empty());
    for (const CudaAttentionConfig& c : *configs) EXPECT_EQ(c.io_dtype, ir::DType::kF16);
  }
}

TEST(KernelPlanTest, PlansTheOpsProgramAndTwoAttentionSetsPerArch) {
  pipeline::LowerOptions lower;
  lower.kv_quant = "int8-online";
  auto module = pipeline::LoadForExecution(testing::SourcePath("models/stories260K"), lower);
  ASSERT_TRUE(module.ok()) << module.status();
  auto configs = PlanAttentionConfigs(**module, 64, {});
  ASSERT_TRUE(configs.ok()) << configs.status();
  // The cache write's set (heads = kv_heads = 4) and the attention's (8 heads).
  ASSERT_EQ(configs->size(), 2u);
  std::set<int> heads;
  for (const CudaAttentionConfig& c : *configs) {
    heads.insert(c.heads);
    EXPECT_EQ(c.kv_heads, 4);
    EXPECT_EQ(c.head_dim, 8);
    EXPECT_EQ(c.cache_dtype, ir::DType::kI8);
    EXPECT_EQ(c.granularity, ir::KvGranularity::kOnline);
  }
  EXPECT_EQ(heads, (std::set<int>{4, 8}));
  auto sm90 = ParseGpuArch("sm_90a"), sm80 = ParseGpuArch("sm_80");
  auto plan = PlanKernels(**module, 64, {}, {*sm90, *sm80});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->size(), 18u);
  std::set<std::string> keys;
  for (const PlannedKernel& k : *plan) keys.insert(k.Key());
  EXPECT_EQ(keys.size(), plan->size());
  EXPECT_TRUE(keys.count("ops threads=256 arch=sm_80"));

  // Tuning changes the decode kernel of the set it names, nothing else.
  KernelTuning tuning;
  DecodeTuning d;
  d.kernel = DecodeTuningKey((*configs)[1]);
  d.vec_bytes = 4;
  d.unroll = 2;
  d.buckets = {{{4, 512, 2}, 0}};
  tuning.decode.push_back(d);
  auto tuned = PlanAttentionConfigs(**module, 64, tuning);
  ASSERT_TRUE(tuned.ok());
  EXPECT_EQ((*tuned)[1].decode_vec_bytes, 4);
  EXPECT_EQ((*tuned)[1].decode_unroll, 2);
  ASSERT_EQ((*tuned)[1].decode_splits.size(), 1u);
  EXPECT_EQ((*tuned)[1].decode_splits[0].splits, 2);
  EXPECT_EQ((*tuned)[0].decode_vec_bytes, 0);
}

TEST(KernelPlanTest, TuningOfAnotherDeviceKindFallsBackToTheHeuristics) {
  auto tuned = std::make_shared<KernelTuning>();
  tuned->device = "NVIDIA H200";
  CudaKernelSource source;
  source.tuning = tuned;
  EXPECT_NE(SourceForDevice(source, "NVIDIA H200").tuning, nullptr);
  EXPECT_EQ(SourceForDevice(source, "NVIDIA A100-SXM4-80GB").tuning, nullptr);
  auto heuristic = std::make_shared<KernelTuning>();  // device "": any device
  source.tuning = heuristic;
  EXPECT_NE(SourceForDevice(source, "NVIDIA A100-SXM4-80GB").tuning, nullptr);
}

}  // namespace
}  // namespace kvcc::runtime
