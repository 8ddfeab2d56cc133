// `kvcc inspect`'s report: KV-cache sizing for a 7B config, weight bytes of real and implied
// weights, the KV-cache scheme read back from an artifact, EOS ids and generation defaults,
// warnings for unknown config keys, and refused options.
#include "frontend/model_summary.h"

#include <fstream>

#include <nlohmann/json.hpp>

#include "frontend/hf_importer.h"
#include "gtest/gtest.h"
#include "ir/kv_cache_scheme.h"
#include "ir/onnx_io.h"
#include "ir/op_names.h"
#include "tests/test_util.h"

namespace kvcc::frontend {
namespace {

// LLaMA-7B's config.json, minimal.
constexpr char kLlama7B[] = R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
  "intermediate_size": 11008, "num_attention_heads": 32, "num_hidden_layers": 32,
  "vocab_size": 32000, "torch_dtype": "float16"})";

std::string Contains(const std::string& text, const std::string& line) {
  return text.find(line) == std::string::npos ? "missing: " + line + "\n" + text : "";
}

TEST(ModelSummaryTest, Llama7BKvCachePerSession) {
  const std::string dir = testing::TempDir("llama7b");
  std::ofstream(dir + "/config.json") << kLlama7B;
  for (const std::string& path : {dir, dir + "/config.json"}) {
    SCOPED_TRACE(path);
    KVCC_ASSERT_OK_AND_ASSIGN(s, SummarizeModel(path));
    EXPECT_FALSE(s.weights_read);
    EXPECT_EQ(s.source_kind, "config.json only");
    EXPECT_EQ(s.parameters, 6738415616);
    KVCC_ASSERT_OK_AND_ASSIGN(text, FormatModelSummary(s, 2048, std::nullopt));
    EXPECT_EQ(Contains(text, "kv-cache per session of 2048 tokens:\n"), "");
    EXPECT_EQ(Contains(text, "* f16: 1 GiB (1073741824 bytes)  <- selected\n"), "");
    EXPECT_EQ(Contains(text, "  i8: 0.5 GiB (536870912 bytes)\n"), "");
    EXPECT_EQ(Contains(text, "  i4: 256 MiB (268435456 bytes)\n"), "");
    EXPECT_EQ(Contains(text, "kv-cache scheme: f16 (none)\n"), "");
    EXPECT_EQ(Contains(text, "head_dim: 128\n"), "");
    EXPECT_EQ(Contains(text, "kv heads: 32\n"), "");
    EXPECT_EQ(Contains(text, "rope: theta 10000, scaling none\n"), "");
    // Two bytes per parameter at torch_dtype float16.
    EXPECT_EQ(Contains(text, "  f16: 12.55 GiB (13476831232 bytes)\n"), "");
    KVCC_ASSERT_OK_AND_ASSIGN(i8, FormatModelSummary(s, 2048, ir::DType::kI8));
    EXPECT_EQ(Contains(i8, "* i8: 0.5 GiB (536870912 bytes)  <- selected\n"), "");
    EXPECT_EQ(Contains(i8, "  f16: 1 GiB (1073741824 bytes)\n"), "");
    KVCC_ASSERT_OK_AND_ASSIGN(longer, FormatModelSummary(s, 4096, ir::DType::kF16));
    EXPECT_EQ(Contains(longer, "* f16: 2 GiB (2147483648 bytes)"), "");
    EXPECT_EQ(Contains(longer, "(beyond max position 2048)"), "");
  }
}

TEST(ModelSummaryTest, Stories260KCheckpointWeights) {
  KVCC_ASSERT_OK_AND_ASSIGN(s, SummarizeModel(testing::SourcePath("models/stories260K")));
  EXPECT_TRUE(s.weights_read);
  EXPECT_EQ(s.source_kind, "hf checkpoint");
  EXPECT_EQ(s.parameters, 260032);
  ASSERT_EQ(s.weight_bytes.size(), 1u);
  EXPECT_EQ(s.weight_bytes.at(ir::DType::kF32), 4 * 260032);  // tied: every parameter once
  EXPECT_EQ(s.kv_scheme, "f16 (none)");
  KVCC_ASSERT_OK_AND_ASSIGN(text, FormatModelSummary(s, 512, std::nullopt));
  EXPECT_EQ(Contains(text, "architecture: LlamaForCausalLM\n"), "");
  EXPECT_EQ(Contains(text, "layers: 5\n"), "");
  EXPECT_EQ(Contains(text, "heads: 8\n"), "");
  EXPECT_EQ(Contains(text, "kv heads: 4\n"), "");
  EXPECT_EQ(Contains(text, "  f32: 0.99 MiB (1040128 bytes)\n"), "");
  // 2 (K, V) x 5 layers x 512 tokens x 4 kv heads x 8 dims x 2 bytes.
  EXPECT_EQ(Contains(text, "* f16: 320 KiB (327680 bytes)  <- selected\n"), "");
}

TEST(ModelSummaryTest, ReadsTheKvSchemeOfAnArtifact) {
  KVCC_ASSERT_OK_AND_ASSIGN(m, ImportHfCheckpoint(testing::SourcePath("models/stories260K")));
  // Stand in for the kv-quantize pass: an i8 per-layer scheme on every layer.
  ir::KvCacheScheme scheme =
      ir::KvCacheScheme::Uniform({ir::DType::kI8, ir::KvGranularity::kPerLayer});
  scheme.k_zp = {0.25f};
  scheme.k_scale = {0.01f};
  scheme.v_zp = {-0.5f};
  scheme.v_scale = {0.02f};
  for (const auto& node : m->graph.nodes()) {
    if (node->op != ir::op::kKvCacheWrite) continue;
    ir::WriteKvCacheScheme(scheme, node.get());
    node->output()->type.dtype = ir::DType::kI8;
  }
  const std::string dir = testing::TempDir("artifact");
  KVCC_ASSERT_OK(ir::WriteOnnx(*m, dir));
  KVCC_ASSERT_OK_AND_ASSIGN(s, SummarizeModel(dir));
  EXPECT_EQ(s.source_kind, "kvcc artifact");
  EXPECT_EQ(s.kv_scheme, "i8 (per_layer)");
  EXPECT_EQ(s.kv_dtype, ir::DType::kI8);
  KVCC_ASSERT_OK_AND_ASSIGN(text, FormatModelSummary(s, 512, std::nullopt));
  EXPECT_EQ(Contains(text, "kv-cache scheme: i8 (per_layer)\n"), "");
  EXPECT_EQ(Contains(text, "* i8: 160 KiB (163840 bytes)  <- selected\n"), "");
}

TEST(ModelSummaryTest, RefusesBadOptionsAndPaths) {
  const std::string dir = testing::TempDir("cfg");
  std::ofstream(dir + "/config.json") << kLlama7B;
  KVCC_ASSERT_OK_AND_ASSIGN(s, SummarizeModel(dir));
  auto zero = FormatModelSummary(s, 0, std::nullopt);
  ASSERT_FALSE(zero.ok());
  EXPECT_NE(std::string(zero.status().message()).find("--max-len"), std::string::npos);
  auto huge = FormatModelSummary(s, int64_t{1} << 62, std::nullopt);
  EXPECT_FALSE(huge.ok());
  auto bf16 = FormatModelSummary(s, 2048, ir::DType::kBF16);
  ASSERT_FALSE(bf16.ok());
  EXPECT_NE(std::string(bf16.status().message()).find("bf16"), std::string::npos);

  auto missing = SummarizeModel(dir + "/nothing");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find(dir + "/nothing"), std::string::npos);
  std::ofstream(dir + "/config.json") << "{\"architectures\": [\"LlamaForCausalLM\"]}";
  auto bad = SummarizeModel(dir);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("hidden_size"), std::string::npos);
}

TEST(ModelSummaryTest, ShowsEosIdsAndGenerationDefaults) {
  const std::string dir = testing::TempDir("gen");
  std::ifstream golden(testing::SourcePath("tests/data/configs/llama3.1-8b.v5.json"));
  std::ofstream(dir + "/config.json") << golden.rdbuf();
  KVCC_ASSERT_OK_AND_ASSIGN(none, SummarizeModel(dir));
  KVCC_ASSERT_OK_AND_ASSIGN(text, FormatModelSummary(none, 2048, std::nullopt));
  EXPECT_EQ(Contains(text, "eos token ids: 128001, 128008, 128009\n"), "");
  EXPECT_EQ(Contains(text, "generation defaults: none (no generation_config.json)\n"), "");
  EXPECT_EQ(Contains(text, "rope: theta 500000, scaling llama3 x8\n"), "");
  std::ofstream(dir + "/generation_config.json")
      << R"({"do_sample": true, "temperature": 0.6, "top_p": 0.9, "eos_token_id": [128001, 128009]})";
  for (const std::string& path : {dir, dir + "/config.json"}) {
    KVCC_ASSERT_OK_AND_ASSIGN(s, SummarizeModel(path));
    ASSERT_TRUE(s.generation.has_value());
    KVCC_ASSERT_OK_AND_ASSIGN(with, FormatModelSummary(s, 2048, std::nullopt));
    EXPECT_EQ(Contains(with, "generation defaults: sampling, temperature 0.6, top_k 50, top_p 0.9; "
                             "eos token ids 128001, 128009 (" + dir + "/generation_config.json)\n"),
              "");
  }
  std::ofstream(dir + "/generation_config.json") << R"({"do_sample": false, "eos_token_id": 128256})";
  auto bad = SummarizeModel(dir);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("eos_token_id"), std::string::npos);
}

TEST(ModelSummaryTest, KeepsTheConfigWarnings) {
  const std::string dir = testing::TempDir("warn");
  nlohmann::json j = nlohmann::json::parse(kLlama7B);
  j["new_knob"] = 3;
  std::ofstream(dir + "/config.json") << j.dump();
  KVCC_ASSERT_OK_AND_ASSIGN(s, SummarizeModel(dir));
  ASSERT_EQ(s.config.warnings.size(), 1u);
  EXPECT_NE(s.config.warnings[0].find("key 'new_knob' (3) is not understood"), std::string::npos);
}

TEST(ModelSummaryTest, FormatBytes) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(511), "511 B");
  EXPECT_EQ(FormatBytes(512), "0.5 KiB");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(1 << 20), "1 MiB");
  EXPECT_EQ(FormatBytes(int64_t{1} << 29), "0.5 GiB");
  EXPECT_EQ(FormatBytes(int64_t{1} << 30), "1 GiB");
  EXPECT_EQ(FormatBytes(int64_t{3} << 30), "3 GiB");
}

}  // namespace
}  // namespace kvcc::frontend
