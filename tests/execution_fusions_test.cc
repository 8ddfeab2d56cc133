// The fusions applied to every model opened for execution: on stories260K both rewrites fire
// in every layer, the module verifies, and the CPU logits stay bit-identical to the unfused
// model's, with the fp16 and the online int8 cache.
#include "passes/execution_fusions.h"

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ir/verifier.h"
#include "passes/kv_quantize.h"
#include "tests/test_util.h"

namespace kvcc::passes {
namespace {

int CountOps(const ir::Module& m, const std::string& op) {
  int n = 0;
  for (const auto& node : m.graph.nodes()) n += node->op == op;
  return n;
}

std::vector<float> Logits(std::unique_ptr<ir::Module> m) {
  return testing::CpuLogits(std::move(m), testing::RandomTokenWindows(1, 16, 512, 11)[0], {42});
}

TEST(ExecutionFusionsTest, FusesEveryLayerOfStories260KWithoutChangingItsLogits) {
  for (bool int8 : {false, true}) {
    std::unique_ptr<ir::Module> plain = testing::LoadStories260K();
    std::unique_ptr<ir::Module> fused = testing::LoadStories260K();
    ASSERT_NE(plain, nullptr);
    ASSERT_NE(fused, nullptr);
    if (int8) {
      // The online int8 scheme needs no calibration file.
      for (ir::Module* m : {plain.get(), fused.get()}) {
        KvQuantizePass quantize(KvQuantScheme::kInt8Online);
        KVCC_ASSERT_OK(quantize.Run(*m));
      }
    }
    KVCC_ASSERT_OK(ApplyExecutionFusions(*fused));
    KVCC_ASSERT_OK(ir::Verify(*fused));
    const int layers = static_cast<int>(fused->config.num_layers);
    EXPECT_EQ(CountOps(*fused, "linear"), 4 * layers);  // qkv, o, gate_up, down
    EXPECT_EQ(CountOps(*fused, "add_rms_norm"), 2 * layers);
    EXPECT_EQ(CountOps(*fused, "add"), 0);
    EXPECT_EQ(CountOps(*fused, "rms_norm"), 1);  // layer 0's input norm reads the embedding
    const std::vector<float> a = Logits(std::move(plain));
    const std::vector<float> b = Logits(std::move(fused));
    ASSERT_FALSE(a.empty());
    ASSERT_EQ(a.size(), b.size());
    size_t differ = 0;
    for (size_t i = 0; i < a.size(); ++i) differ += a[i] != b[i];
    EXPECT_EQ(differ, 0u) << (int8 ? "int8 cache" : "fp16 cache");
  }
}

}  // namespace
}  // namespace kvcc::passes
