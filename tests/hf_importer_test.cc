// The HF importer: the real stories260K checkpoint, hand-built checkpoints for each
// architecture's naming (Qwen2 biases, InternLM2's interleaved wqkv), every bad checkpoint the
// importer must refuse, and the synth configs in models/configs/.
#include "frontend/hf_importer.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "frontend/hf_config.h"
#include "frontend/safetensors.h"
#include "testing/safetensors_writer.h"
#include "testing/synth.h"
#include "gtest/gtest.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "tests/test_util.h"

namespace kvcc::frontend {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

int CountOps(const ir::Module& m, const std::string& op) {
  int n = 0;
  for (const auto& node : m.graph.nodes()) n += node->op == op;
  return n;
}

std::string Message(const absl::Status& s) { return std::string(s.message()); }

// models/stories260K is the repo's copy of ../shared/models/stories260K (real weights).
TEST(HfImporterTest, ImportsStories260K) {
  const std::string dir = testing::SourcePath("models/stories260K");
  KVCC_ASSERT_OK_AND_ASSIGN(m, ImportHfCheckpoint(dir));
  KVCC_ASSERT_OK(ir::Verify(*m));
  const ir::ModelConfig& c = m->config;
  EXPECT_EQ(c.num_layers, 5);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_EQ(m->metadata.at("source"), dir);

  // 47 checkpoint tensors, no lm_head (tied).
  EXPECT_EQ(m->graph.weights().size(), 47u);
  EXPECT_EQ(m->graph.FindValue("lm_head.weight"), nullptr);
  const ir::Value* embed = m->graph.FindValue("model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  ASSERT_EQ(embed->users.size(), 2u);
  EXPECT_EQ(embed->users[0]->op, "embedding");
  EXPECT_EQ(embed->users[1]->op, "lm_head");

  // Per layer: 2 rms_norm, 7 linear, 2 rotary, kv_cache_write, attention, silu_mul, 2 add.
  EXPECT_EQ(m->graph.nodes().size(), 5u * 16 + 3);
  EXPECT_EQ(CountOps(*m, "linear"), 5 * 7);
  EXPECT_EQ(CountOps(*m, "rotary"), 5 * 2);
  EXPECT_EQ(CountOps(*m, "kv_cache_write"), 5);
  EXPECT_EQ(CountOps(*m, "attention"), 5);
  EXPECT_EQ(CountOps(*m, "rms_norm"), 5 * 2 + 1);
  EXPECT_EQ(CountOps(*m, "split"), 0);

  ASSERT_EQ(m->graph.inputs().size(), 2u);
  EXPECT_EQ(m->graph.inputs()[0]->name, "input_ids");
  EXPECT_EQ(m->graph.inputs()[1]->name, "positions");
  ASSERT_EQ(m->graph.outputs().size(), 1u);
  EXPECT_EQ(m->graph.outputs()[0]->name, "logits");
  EXPECT_EQ(m->graph.outputs()[0]->type.ToString(), "f32[?,512]");

  const ir::Node* k_rot = m->graph.FindNode("layers.3.k_rotary");
  ASSERT_NE(k_rot, nullptr);
  EXPECT_EQ(*k_rot->Int("heads"), 4);
  EXPECT_EQ(*k_rot->Int("head_dim"), 8);
  EXPECT_EQ(*k_rot->Float("theta"), 10000.0);
  EXPECT_EQ(*k_rot->Str("scaling"), "none");
  EXPECT_EQ(*k_rot->Int("max_position"), 512);
  EXPECT_EQ(k_rot->input(0)->name, "layers.3.k_proj");
  EXPECT_EQ(k_rot->input(1)->name, "positions");
  const ir::Node* kv = m->graph.FindNode("layers.3.kv_cache_write");
  ASSERT_NE(kv, nullptr);
  EXPECT_EQ(kv->input(0), k_rot->output());
  EXPECT_EQ(kv->input(1)->name, "layers.3.v_proj");
  EXPECT_EQ(*kv->Int("layer"), 3);
  EXPECT_EQ(*kv->Str("cache_dtype"), "f16");
  EXPECT_EQ(*kv->Str("kv_scheme"), "none");
  EXPECT_EQ(kv->output()->type.ToString(), "f16[4,8]");
  const ir::Node* att = m->graph.FindNode("layers.3.attention");
  ASSERT_NE(att, nullptr);
  EXPECT_EQ(att->input(1), kv->output());
  EXPECT_EQ(*att->Int("heads"), 8);
  EXPECT_EQ(*att->Int("causal"), 1);
  EXPECT_DOUBLE_EQ(*att->Float("scale"), 1.0 / std::sqrt(8.0));
  const ir::Node* down = m->graph.FindNode("layers.3.down_proj");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->input(0)->producer->op, "silu_mul");
  EXPECT_EQ(down->input(1)->name, "model.layers.3.mlp.down_proj.weight");

  // Weights are the checkpoint's bytes, in its dtype.
  KVCC_ASSERT_OK_AND_ASSIGN(file, SafetensorsFile::Open(dir + "/model.safetensors"));
  for (const ir::Value* w : m->graph.weights()) {
    KVCC_ASSERT_OK_AND_ASSIGN(t, file->Get(w->name));
    EXPECT_EQ(w->type.dtype, ir::DType::kF32);
    EXPECT_EQ(w->type.shape, t.shape);
    ASSERT_EQ(w->weight->size, t.data.size);
    EXPECT_EQ(std::memcmp(w->weight->bytes, t.data.bytes, t.data.size), 0) << w->name;
  }
}

TEST(HfImporterTest, PrinterOutputIsStable) {
  const std::string dir = testing::SourcePath("models/stories260K");
  KVCC_ASSERT_OK_AND_ASSIGN(a, ImportHfCheckpoint(dir));
  KVCC_ASSERT_OK_AND_ASSIGN(b, ImportHfCheckpoint(dir));
  const std::string text = ir::Print(*a);
  EXPECT_EQ(text, ir::Print(*b));
  for (const std::string& line : {
           std::string("  input %input_ids : i32[?]\n"),
           std::string("  weight %model.layers.0.self_attn.k_proj.weight : f32[32,64]\n"),
           std::string("  %layers.0.kv_cache_write:f16[4,8] = kv_cache_write(%layers.0.k_rotary, "
                       "%layers.0.v_proj) {cache_dtype=\"f16\", head_dim=8, kv_heads=4, "
                       "kv_scheme=\"none\", layer=0}  # layers.0.kv_cache_write\n"),
           std::string("  %logits:f32[?,512] = lm_head(%norm, %model.embed_tokens.weight)  # "
                       "logits\n"),
           std::string("  output %logits\n")}) {
    EXPECT_NE(text.find(line), std::string::npos) << "missing: " << line << "\n" << text;
  }
}

// A tiny LLaMA-family checkpoint written by hand, to be broken in controlled ways.
struct TinyModel {
  Json config;
  std::map<std::string, std::vector<int64_t>> shapes;
  ir::DType dtype = ir::DType::kF32;
};

TinyModel TinyLlama(int layers = 2) {
  TinyModel t;
  t.config = Json::parse(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 16,
    "intermediate_size": 24, "num_attention_heads": 4, "num_key_value_heads": 2,
    "num_hidden_layers": 2, "vocab_size": 32, "max_position_embeddings": 64,
    "rms_norm_eps": 1e-5, "torch_dtype": "float32", "tie_word_embeddings": false})");
  t.config["num_hidden_layers"] = layers;
  t.shapes["model.embed_tokens.weight"] = {32, 16};
  t.shapes["model.norm.weight"] = {16};
  t.shapes["lm_head.weight"] = {32, 16};
  for (int i = 0; i < layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    t.shapes[p + "input_layernorm.weight"] = {16};
    t.shapes[p + "post_attention_layernorm.weight"] = {16};
    t.shapes[p + "self_attn.q_proj.weight"] = {16, 16};
    t.shapes[p + "self_attn.k_proj.weight"] = {8, 16};
    t.shapes[p + "self_attn.v_proj.weight"] = {8, 16};
    t.shapes[p + "self_attn.o_proj.weight"] = {16, 16};
    t.shapes[p + "mlp.gate_proj.weight"] = {24, 16};
    t.shapes[p + "mlp.up_proj.weight"] = {24, 16};
    t.shapes[p + "mlp.down_proj.weight"] = {16, 24};
  }
  return t;
}

// Tensor bytes: element k of tensor n holds a distinct pattern byte, so mix-ups are visible;
// the top byte of each element keeps sign and high exponent bits clear (|x| < 2), as the
// importer refuses NaN/Inf and absurd weights.
SafetensorsTensor MakeTensor(const std::string& name, ir::DType dtype,
                             const std::vector<int64_t>& shape, uint8_t salt) {
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  std::vector<uint8_t> bytes(ir::DTypeBytes(dtype, count));
  for (size_t k = 0; k < bytes.size(); ++k) bytes[k] = static_cast<uint8_t>(k * 7 + salt);
  const size_t elem = static_cast<size_t>(ir::DTypeBytes(dtype, 1));
  for (size_t k = elem - 1; k < bytes.size(); k += elem) bytes[k] &= 0x3F;
  return {name, dtype, shape, ir::WeightData::FromVector(std::move(bytes)), ""};
}

void WriteConfig(const std::string& dir, const Json& config) {
  std::ofstream(dir + "/config.json") << config.dump(2);
}

void WriteModel(const std::string& dir, const TinyModel& t,
                const std::string& file = "model.safetensors") {
  WriteConfig(dir, t.config);
  std::vector<SafetensorsTensor> tensors;
  uint8_t salt = 0;
  for (const auto& [name, shape] : t.shapes) tensors.push_back(MakeTensor(name, t.dtype, shape, ++salt));
  ASSERT_TRUE(testing::WriteSafetensors(dir + "/" + file, tensors, {{"format", "pt"}}).ok());
}

TEST(HfImporterTest, ImportsHandBuiltCheckpointAndIgnoresExtraTensors) {
  const std::string dir = testing::TempDir("ok");
  TinyModel t = TinyLlama();
  t.dtype = ir::DType::kBF16;
  t.shapes["model.layers.0.self_attn.rotary_emb.inv_freq"] = {2};  // old checkpoints carry it
  WriteModel(dir, t);
  KVCC_ASSERT_OK_AND_ASSIGN(m, ImportHfCheckpoint(dir));
  KVCC_ASSERT_OK(ir::Verify(*m));
  EXPECT_EQ(m->graph.weights().size(), t.shapes.size() - 1);
  EXPECT_EQ(m->graph.FindValue("model.layers.0.self_attn.rotary_emb.inv_freq"), nullptr);
  EXPECT_EQ(m->graph.FindValue("lm_head.weight")->type.ToString(), "bf16[32,16]");
  EXPECT_EQ(m->config.weight_dtype, ir::DType::kBF16);
  EXPECT_EQ(m->graph.FindNode("logits")->input(1)->name, "lm_head.weight");
}

TEST(HfImporterTest, TensorMissingForALayer) {
  const std::string dir = testing::TempDir("missing");
  TinyModel t = TinyLlama();
  t.shapes.erase("model.layers.1.self_attn.k_proj.weight");
  WriteModel(dir, t);
  auto m = ImportHfCheckpoint(dir);
  ASSERT_FALSE(m.ok());
  const std::string msg = Message(m.status());
  EXPECT_NE(msg.find(dir), std::string::npos) << msg;
  EXPECT_NE(msg.find("'model.layers.1.self_attn.k_proj.weight'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("layer 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[8,16]"), std::string::npos) << msg;
}

TEST(HfImporterTest, CheckpointWithMoreLayersThanTheConfig) {
  const std::string dir = testing::TempDir("extra-layer");
  TinyModel t = TinyLlama(2);
  t.config["num_hidden_layers"] = 1;
  WriteModel(dir, t);
  auto m = ImportHfCheckpoint(dir);
  ASSERT_FALSE(m.ok());
  const std::string msg = Message(m.status());
  EXPECT_NE(msg.find(dir + "/model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'model.layers.1."), std::string::npos) << msg;
  EXPECT_NE(msg.find("num_hidden_layers 1"), std::string::npos) << msg;
}

TEST(HfImporterTest, UntiedModelWithoutLmHead) {
  const std::string dir = testing::TempDir("nohead");
  TinyModel t = TinyLlama();
  t.shapes.erase("lm_head.weight");
  WriteModel(dir, t);
  auto m = ImportHfCheckpoint(dir);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(Message(m.status()).find("'lm_head.weight'"), std::string::npos) << m.status();
  EXPECT_NE(Message(m.status()).find("tie_word_embeddings"), std::string::npos) << m.status();
}

TEST(HfImporterTest, WeightShapeDisagreesWithConfig) {
  const std::string dir = testing::TempDir("shape");
  TinyModel t = TinyLlama();
  t.shapes["model.layers.0.mlp.up_proj.weight"] = {24, 15};
  WriteModel(dir, t);
  auto m = ImportHfCheckpoint(dir);
  ASSERT_FALSE(m.ok());
  const std::string msg = Message(m.status());
  EXPECT_NE(msg.find(dir + "/model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'model.layers.0.mlp.up_proj.weight'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("layer 0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[24,15]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected [24,16]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;

  // The same checkpoint against a config claiming more kv heads: every layer's k_proj is off.
  TinyModel t2 = TinyLlama();
  t2.config["num_key_value_heads"] = 4;
  const std::string dir2 = testing::TempDir("kvheads");
  WriteModel(dir2, t2);
  auto m2 = ImportHfCheckpoint(dir2);
  ASSERT_FALSE(m2.ok());
  EXPECT_NE(Message(m2.status()).find("expected [16,16]"), std::string::npos) << m2.status();
  EXPECT_NE(Message(m2.status()).find("num_key_value_heads"), std::string::npos) << m2.status();
}

TEST(HfImporterTest, NonFloatWeightIsRefused) {
  const std::string dir = testing::TempDir("int8");
  TinyModel t = TinyLlama();
  WriteConfig(dir, t.config);
  std::vector<SafetensorsTensor> tensors;
  for (const auto& [name, shape] : t.shapes) {
    bool odd = name == "model.layers.1.mlp.gate_proj.weight";
    tensors.push_back(MakeTensor(name, odd ? ir::DType::kI8 : ir::DType::kF16, shape, 1));
  }
  KVCC_ASSERT_OK(testing::WriteSafetensors(dir + "/model.safetensors", tensors));
  auto m = ImportHfCheckpoint(dir);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(Message(m.status()).find("'model.layers.1.mlp.gate_proj.weight'"), std::string::npos);
  EXPECT_NE(Message(m.status()).find("dtype i8"), std::string::npos) << m.status();
}

TEST(HfImporterTest, BinOnlyDirectoryIsRefused) {
  const std::string dir = testing::TempDir("bin");
  WriteConfig(dir, TinyLlama().config);
  std::ofstream(dir + "/pytorch_model.bin") << "PK\x03\x04 not really a pickle";
  auto m = ImportHfCheckpoint(dir);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(Message(m.status()).find("pytorch_model.bin"), std::string::npos) << m.status();
  EXPECT_NE(Message(m.status()).find("safetensors"), std::string::npos) << m.status();
}

TEST(HfImporterTest, ShardListedButAbsent) {
  const std::string dir = testing::TempDir("shards");
  TinyModel t = TinyLlama();
  WriteConfig(dir, t.config);
  std::vector<SafetensorsTensor> first, second;
  Json index;
  uint8_t salt = 0;
  for (const auto& [name, shape] : t.shapes) {
    const bool in_first = name.find("layers.1.") == std::string::npos;
    (in_first ? first : second).push_back(MakeTensor(name, t.dtype, shape, ++salt));
    index["weight_map"][name] =
        in_first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  std::ofstream(dir + "/model.safetensors.index.json") << index.dump();
  KVCC_ASSERT_OK(testing::WriteSafetensors(dir + "/model-00001-of-00002.safetensors", first));
  auto m = ImportHfCheckpoint(dir);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(Message(m.status()).find("model-00002-of-00002.safetensors"), std::string::npos)
      << m.status();
  // With the second shard present the same sharded checkpoint imports.
  KVCC_ASSERT_OK(testing::WriteSafetensors(dir + "/model-00002-of-00002.safetensors", second));
  KVCC_ASSERT_OK_AND_ASSIGN(ok, ImportHfCheckpoint(dir));
  EXPECT_EQ(ok->graph.weights().size(), t.shapes.size());
}

TEST(HfImporterTest, BadConfigIsReportedBeforeWeights) {
  const std::string dir = testing::TempDir("badcfg");
  TinyModel t = TinyLlama();
  t.config["architectures"] = {"FalconForCausalLM"};
  WriteModel(dir, t);
  auto m = ImportHfCheckpoint(dir);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(Message(m.status()).find(dir + "/config.json"), std::string::npos) << m.status();
  EXPECT_NE(Message(m.status()).find("FalconForCausalLM"), std::string::npos) << m.status();
}

TEST(HfImporterTest, Qwen2QkvBiasAndTiedEmbedding) {
  const std::string dir = testing::TempDir("qwen2");
  TinyModel t = TinyLlama(1);
  t.config["architectures"] = {"Qwen2ForCausalLM"};
  t.config["tie_word_embeddings"] = true;
  t.dtype = ir::DType::kF16;
  t.shapes.erase("lm_head.weight");
  t.shapes["model.layers.0.self_attn.q_proj.bias"] = {16};
  t.shapes["model.layers.0.self_attn.k_proj.bias"] = {8};
  t.shapes["model.layers.0.self_attn.v_proj.bias"] = {8};
  WriteModel(dir, t);
  KVCC_ASSERT_OK_AND_ASSIGN(m, ImportHfCheckpoint(dir));
  for (const char* proj : {"q_proj", "k_proj", "v_proj"}) {
    const ir::Node* n = m->graph.FindNode(std::string("layers.0.") + proj);
    ASSERT_NE(n, nullptr);
    ASSERT_NE(n->input(2), nullptr) << proj;
    EXPECT_EQ(n->input(2)->name, std::string("model.layers.0.self_attn.") + proj + ".bias");
  }
  EXPECT_EQ(m->graph.FindNode("layers.0.o_proj")->input(2), nullptr);
  EXPECT_EQ(m->graph.FindNode("logits")->input(1)->name, "model.embed_tokens.weight");

  // A missing bias is a missing tensor for that layer.
  t.shapes.erase("model.layers.0.self_attn.v_proj.bias");
  const std::string dir2 = testing::TempDir("qwen2-nobias");
  WriteModel(dir2, t);
  auto bad = ImportHfCheckpoint(dir2);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(Message(bad.status()).find("'model.layers.0.self_attn.v_proj.bias'"),
            std::string::npos);
}

// InternLM2: wqkv rows are grouped per kv head as [q heads of the group, k, v] x head_dim.
// The imported weight must hold all q rows, then all k rows, then all v rows.
TEST(HfImporterTest, InternLM2WqkvIsDeinterleaved) {
  const int64_t H = 4, KVH = 2, d = 4, hidden = 16, group = H / KVH;
  const int64_t rows = (H + 2 * KVH) * d;
  for (bool bias : {false, true}) {
    SCOPED_TRACE(bias ? "with bias" : "without bias");
    const std::string dir = testing::TempDir(bias ? "internlm2-bias" : "internlm2");
    Json config = Json::parse(R"({"architectures": ["InternLM2ForCausalLM"], "hidden_size": 16,
      "intermediate_size": 24, "num_attention_heads": 4, "num_key_value_heads": 2,
      "num_hidden_layers": 1, "vocab_size": 32, "rope_theta": 1000000,
      "rope_scaling": {"type": "linear", "factor": 2.0}, "torch_dtype": "float32"})");
    config["bias"] = bias;
    WriteConfig(dir, config);
    std::vector<SafetensorsTensor> tensors;
    auto add = [&](const std::string& name, std::vector<int64_t> shape) {
      tensors.push_back(MakeTensor(name, ir::DType::kF32, shape, 3));
    };
    add("model.tok_embeddings.weight", {32, hidden});
    add("output.weight", {32, hidden});
    add("model.norm.weight", {hidden});
    add("model.layers.0.attention_norm.weight", {hidden});
    add("model.layers.0.ffn_norm.weight", {hidden});
    add("model.layers.0.attention.wo.weight", {hidden, H * d});
    if (bias) add("model.layers.0.attention.wo.bias", {hidden});
    add("model.layers.0.feed_forward.w1.weight", {24, hidden});
    add("model.layers.0.feed_forward.w3.weight", {24, hidden});
    add("model.layers.0.feed_forward.w2.weight", {hidden, 24});
    // wqkv row r holds the value r in every column; its bias entry r holds r too.
    std::vector<float> wqkv(rows * hidden), bqkv(rows);
    for (int64_t r = 0; r < rows; ++r) {
      bqkv[r] = static_cast<float>(r);
      for (int64_t k = 0; k < hidden; ++k) wqkv[r * hidden + k] = static_cast<float>(r);
    }
    auto as_bytes = [](const std::vector<float>& v) {
      std::vector<uint8_t> b(v.size() * 4);
      std::memcpy(b.data(), v.data(), b.size());
      return ir::WeightData::FromVector(std::move(b));
    };
    tensors.push_back({"model.layers.0.attention.wqkv.weight", ir::DType::kF32, {rows, hidden},
                       as_bytes(wqkv), ""});
    if (bias) {
      tensors.push_back({"model.layers.0.attention.wqkv.bias", ir::DType::kF32, {rows},
                         as_bytes(bqkv), ""});
    }
    KVCC_ASSERT_OK(testing::WriteSafetensors(dir + "/model.safetensors", tensors));

    KVCC_ASSERT_OK_AND_ASSIGN(m, ImportHfCheckpoint(dir));
    KVCC_ASSERT_OK(ir::Verify(*m));
    const ir::Node* qkv = m->graph.FindNode("layers.0.qkv_proj");
    ASSERT_NE(qkv, nullptr);
    EXPECT_EQ(qkv->op, "linear");
    const ir::Node* split = m->graph.FindNode("layers.0.qkv_proj.split");
    ASSERT_NE(split, nullptr);
    EXPECT_EQ(*split->Ints("sizes"), (std::vector<int64_t>{H * d, KVH * d, KVH * d}));
    EXPECT_EQ(m->graph.FindNode("layers.0.q_rotary")->input(0), split->output(0));
    EXPECT_EQ(m->graph.FindNode("layers.0.k_rotary")->input(0), split->output(1));
    EXPECT_EQ(m->graph.FindNode("layers.0.kv_cache_write")->input(1), split->output(2));
    EXPECT_EQ(*m->graph.FindNode("layers.0.q_rotary")->Str("scaling"), "linear");
    EXPECT_EQ(*m->graph.FindNode("layers.0.q_rotary")->Float("factor"), 2.0);
    EXPECT_EQ(m->graph.FindNode("logits")->input(1)->name, "output.weight");
    EXPECT_EQ(m->graph.FindNode("layers.0.gate_proj")->input(1)->name,
              "model.layers.0.feed_forward.w1.weight");
    EXPECT_EQ(m->graph.FindNode("layers.0.up_proj")->input(1)->name,
              "model.layers.0.feed_forward.w3.weight");
    const ir::Node* o = m->graph.FindNode("layers.0.o_proj");
    EXPECT_EQ(o->input(2) != nullptr, bias);

    // Where each source row must land: source feature (kv head h, slot s, dim t) in HF's
    // "(h gs d)" layout is q head h*group+s for s < group, else k or v of kv head h.
    std::vector<int64_t> dest(rows);
    for (int64_t h = 0; h < KVH; ++h) {
      for (int64_t s = 0; s < group + 2; ++s) {
        for (int64_t t = 0; t < d; ++t) {
          const int64_t src = (h * (group + 2) + s) * d + t;
          if (s < group) dest[src] = (h * group + s) * d + t;
          else if (s == group) dest[src] = H * d + h * d + t;
          else dest[src] = H * d + KVH * d + h * d + t;
        }
      }
    }
    const ir::Value* w = qkv->input(1);
    ASSERT_EQ(w->type.shape, (std::vector<int64_t>{rows, hidden}));
    const float* got = reinterpret_cast<const float*>(w->weight->bytes);
    for (int64_t src = 0; src < rows; ++src) {
      for (int64_t k = 0; k < hidden; ++k) {
        ASSERT_EQ(got[dest[src] * hidden + k], static_cast<float>(src)) << "row " << src;
      }
    }
    if (bias) {
      const float* b = reinterpret_cast<const float*>(qkv->input(2)->weight->bytes);
      for (int64_t src = 0; src < rows; ++src) EXPECT_EQ(b[dest[src]], static_cast<float>(src));
    }
  }
}

// Every small synth config in models/configs/ imports as a checkpoint would. Configs of
// full-size models (billions of parameters) are left out: writing them takes gigabytes.
TEST(HfImporterTest, ImportsEverySmallSynthConfig) {
  const fs::path configs = testing::SourcePath("models/configs");
  if (!fs::is_directory(configs)) GTEST_SKIP() << "no models/configs in this tree";
  int imported = 0;
  for (const auto& entry : fs::directory_iterator(configs)) {
    if (entry.path().extension() != ".json") continue;
    const std::string name = entry.path().stem().string();
    SCOPED_TRACE(name);
    KVCC_ASSERT_OK_AND_ASSIGN(config, LoadHfConfig(entry.path().string()));
    if (config.NumParameters() > 50'000'000) continue;
    const std::string dir = testing::TempDir(name);
    testing::SynthOptions options;
    options.seed = 7;
    KVCC_ASSERT_OK_AND_ASSIGN(result, testing::SynthesizeCheckpoint(entry.path().string(), dir, options));
    KVCC_ASSERT_OK_AND_ASSIGN(m, ImportHfCheckpoint(dir));
    KVCC_ASSERT_OK(ir::Verify(*m));
    EXPECT_EQ(m->config.architecture, config.architecture);
    EXPECT_EQ(m->config.weight_dtype, result.dtype);
    EXPECT_EQ(CountOps(*m, "attention"), config.num_layers);
    EXPECT_EQ(CountOps(*m, "split"), config.architecture == "InternLM2ForCausalLM"
                                         ? config.num_layers
                                         : 0);
    // The graph holds every synthesized tensor, and their parameters add up to the config's.
    EXPECT_EQ(m->graph.weights().size(), result.plan.tensors.size());
    int64_t params = 0;
    for (const ir::Value* w : m->graph.weights()) params += w->type.NumElements();
    EXPECT_EQ(params, config.NumParameters());
    ++imported;
  }
  EXPECT_GE(imported, 6);
}

// Tensors at odd offsets of the data section (safetensors does not align them) are copied
// into aligned memory at import, with the same bytes: backends load whole elements.
TEST(HfImporterTest, UnalignedTensorsAreCopiedAligned) {
  const std::string dir = testing::TempDir("unaligned");
  TinyModel t = TinyLlama();
  t.dtype = ir::DType::kBF16;
  WriteConfig(dir, t.config);
  std::vector<SafetensorsTensor> tensors = {
      {"a.odd", ir::DType::kU8, {1}, ir::WeightData::FromVector({7}), ""}};  // first in the data
  uint8_t salt = 0;
  for (const auto& [name, shape] : t.shapes) tensors.push_back(MakeTensor(name, t.dtype, shape, ++salt));
  KVCC_ASSERT_OK(testing::WriteSafetensors(dir + "/model.safetensors", tensors));
  KVCC_ASSERT_OK_AND_ASSIGN(file, SafetensorsFile::Open(dir + "/model.safetensors"));
  KVCC_ASSERT_OK_AND_ASSIGN(embed, file->Get("model.embed_tokens.weight"));
  ASSERT_NE(reinterpret_cast<uintptr_t>(embed.data.bytes) % 2, 0u) << "the test needs an odd offset";
  KVCC_ASSERT_OK_AND_ASSIGN(m, ImportHfCheckpoint(dir));
  for (const ir::Value* w : m->graph.weights()) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(w->weight->bytes) % 2, 0u) << w->name;
    KVCC_ASSERT_OK_AND_ASSIGN(src, file->Get(w->name));
    ASSERT_EQ(w->weight->size, src.data.size);
    EXPECT_EQ(std::memcmp(w->weight->bytes, src.data.bytes, src.data.size), 0) << w->name;
  }
}

// NaN, Inf or absurdly large weights (often a tensor whose bytes are another dtype) are found
// at import, naming the tensor, instead of surfacing as NaN logits at sampling time.
TEST(HfImporterTest, NonFiniteOrAbsurdWeightsNameTheTensor) {
  struct Case {
    ir::DType dtype;
    std::vector<uint8_t> element;  // little-endian bits written at element 3
    std::string needle;
  };
  const std::vector<Case> cases = {
      {ir::DType::kBF16, {0xC0, 0x7F}, "NaN"},
      {ir::DType::kBF16, {0x80, 0xFF}, "-Inf"},
      {ir::DType::kF16, {0x00, 0x7C}, "+Inf"},
      {ir::DType::kF16, {0x01, 0x7E}, "NaN"},
      {ir::DType::kF32, {0x00, 0x00, 0x80, 0x7F}, "+Inf"},
      {ir::DType::kF32, {0xCA, 0xF2, 0x49, 0x71}, "absurd value 1e+30"},
      {ir::DType::kBF16, {0x80, 0x4B}, "absurd value 1.67772e+07"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.needle);
    const std::string dir = testing::TempDir("nonfinite");
    TinyModel t = TinyLlama();
    t.dtype = c.dtype;
    WriteConfig(dir, t.config);
    std::vector<SafetensorsTensor> tensors;
    uint8_t salt = 0;
    for (const auto& [name, shape] : t.shapes) {
      tensors.push_back(MakeTensor(name, t.dtype, shape, ++salt));
      if (name == "model.layers.1.mlp.up_proj.weight") {
        auto* bytes = const_cast<uint8_t*>(tensors.back().data.bytes);
        std::memcpy(bytes + 3 * c.element.size(), c.element.data(), c.element.size());
      }
    }
    KVCC_ASSERT_OK(testing::WriteSafetensors(dir + "/model.safetensors", tensors));
    auto m = ImportHfCheckpoint(dir);
    ASSERT_FALSE(m.ok());
    const std::string msg(m.status().message());
    for (const std::string& needle : {std::string("model.safetensors"),
                                      std::string("'model.layers.1.mlp.up_proj.weight' (layer 1)"),
                                      c.needle, std::string("element 3")}) {
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
  }
}

}  // namespace
}  // namespace kvcc::frontend
