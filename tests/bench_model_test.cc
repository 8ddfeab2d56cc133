// tools/bench_model: the shape-only checkpoints `kvcc bench decode/memory` import go through
// the real importer, in 16 bits and as AutoAWQ-GEMM 4-bit checkpoints (--w4-group-size), and a
// group size a linear's width does not take is an error naming the tensor.
#include "tools/bench_model.h"

#include <filesystem>

#include "frontend/model_loader.h"
#include "gtest/gtest.h"
#include "ir/op_names.h"
#include "tests/test_util.h"

namespace kvcc::tools {
namespace {

std::string Config(const std::string& name) {
  return kvcc::testing::SourcePath("models/configs/" + name + ".json");
}

// The linears of the imported graph: 4-bit (a group_size attribute) and 16-bit.
struct LinearCount {
  int w4 = 0, w16 = 0;
};
LinearCount CountLinears(const ir::Module& m, int64_t group_size) {
  LinearCount c;
  for (const auto& n : m.graph.nodes()) {
    if (n->op != ir::op::kLinear) continue;
    if (n->IntOr("group_size", 0) == group_size && group_size > 0) {
      ++c.w4;
    } else {
      ++c.w16;
    }
  }
  return c;
}

TEST(BenchModelTest, SixteenBitCheckpointImportsWithoutQuantizedLinears) {
  const std::string dir = kvcc::testing::TempDir("bench_model_f16");
  KVCC_ASSERT_OK(WriteShapeOnlyCheckpoint(Config("llama-hd64-mha"), dir).status());
  KVCC_ASSERT_OK_AND_ASSIGN(m, frontend::LoadModel(dir));
  const LinearCount c = CountLinears(*m, 64);
  EXPECT_EQ(c.w4, 0);
  EXPECT_EQ(c.w16, 14);  // q, k, v, o, gate, up, down of two layers
}

TEST(BenchModelTest, W4CheckpointQuantizesEveryDecoderLinear) {
  const std::string dir = kvcc::testing::TempDir("bench_model_w4");
  KVCC_ASSERT_OK(WriteShapeOnlyCheckpoint(Config("llama-hd64-mha"), dir, 16).status());
  KVCC_ASSERT_OK_AND_ASSIGN(m, frontend::LoadModel(dir));
  const LinearCount c = CountLinears(*m, 16);
  EXPECT_EQ(c.w4, 14);
  EXPECT_EQ(c.w16, 0);
  EXPECT_EQ(m->metadata.count("model_format"), 1u);
}

TEST(BenchModelTest, W4InternLm2KeepsItsInterleavedQkvInSixteenBits) {
  const std::string dir = kvcc::testing::TempDir("bench_model_w4_internlm2");
  KVCC_ASSERT_OK(WriteShapeOnlyCheckpoint(Config("internlm2-gqa"), dir, 64).status());
  KVCC_ASSERT_OK_AND_ASSIGN(m, frontend::LoadModel(dir));
  const LinearCount c = CountLinears(*m, 64);
  EXPECT_EQ(c.w4, 8);  // wo, w1, w2, w3 of two layers
}

TEST(BenchModelTest, GroupSizeTheWidthDoesNotTakeNamesTheTensor) {
  // The MLP's 688 inputs of down_proj are not a multiple of 128.
  auto plan = WriteShapeOnlyCheckpoint(Config("llama-hd64-mha"), kvcc::testing::TempDir("bench_model_bad"), 128);
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("down_proj.weight"), std::string::npos)
      << plan.status();
}

TEST(BenchModelTest, CheckpointFoldersDifferByBenchConfigAndGroupSize) {
  EXPECT_NE(BenchCheckpointDir("decode", "a/llama-7b.json", 0),
            BenchCheckpointDir("decode", "a/llama-7b.json", 128));
  EXPECT_NE(BenchCheckpointDir("decode", "a/llama-7b.json", 128),
            BenchCheckpointDir("memory", "a/llama-7b.json", 128));
  EXPECT_EQ(W4Label(0), "");
  EXPECT_EQ(W4Label(128), " (W4 AWQ g128)");
}

}  // namespace
}  // namespace kvcc::tools
