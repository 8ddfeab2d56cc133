// `kvcc synth`: determinism, exact Hugging Face names and shapes per architecture, value
// distributions, sharding, config errors, and (through KVCC_PYTHON) transformers loading the
// checkpoints and running them.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "frontend/safetensors.h"
#include "testing/synth.h"
#include "gtest/gtest.h"
#include "ir/half.h"
#include "tests/test_util.h"

namespace kvcc::testing {
namespace {

using testing::ReadFileBytes;

namespace fs = std::filesystem;
using ::kvcc::testing::SourcePath;
using ::kvcc::testing::TempDir;

const char* const kSmallConfigs[] = {"llama-hd64-mha",  "llama-hd128-gqa", "mistral-gqa",
                                     "qwen2-bias-tied", "internlm2-gqa",   "internlm-bias"};

std::string ConfigPath(const std::string& name) {
  return SourcePath("models/configs/" + name + ".json");
}

nlohmann::json ReadJson(const std::string& path) { return nlohmann::json::parse(ReadFileBytes(path)); }

SynthOptions Options(uint64_t seed, std::optional<ir::DType> dtype = std::nullopt) {
  SynthOptions o;
  o.seed = seed;
  o.dtype = dtype;
  return o;
}

// The parameters each architecture's Hugging Face modeling code declares, derived here from the
// config independently of synth: name -> shape.
std::map<std::string, std::vector<int64_t>> ExpectedTensors(const nlohmann::json& c) {
  const std::string arch = c["architectures"][0];
  const int64_t hidden = c["hidden_size"], heads = c["num_attention_heads"];
  const int64_t layers = c["num_hidden_layers"], inter = c["intermediate_size"];
  const int64_t vocab = c["vocab_size"];
  int64_t kv_heads = c.value("num_key_value_heads", heads);
  if (arch == "InternLMForCausalLM") kv_heads = heads;
  int64_t head_dim = hidden / heads;
  if (c.contains("head_dim") && !c["head_dim"].is_null()) head_dim = c["head_dim"];
  const bool tied = c.value("tie_word_embeddings", false);
  const int64_t q = heads * head_dim, kv = kv_heads * head_dim;
  std::map<std::string, std::vector<int64_t>> out;
  auto linear = [&](const std::string& name, int64_t rows, int64_t cols, bool bias) {
    out[name + ".weight"] = {rows, cols};
    if (bias) out[name + ".bias"] = {rows};
  };
  if (arch == "InternLM2ForCausalLM") {
    const bool bias = c.value("bias", true);
    out["model.tok_embeddings.weight"] = {vocab, hidden};
    for (int64_t i = 0; i < layers; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      out[p + "attention_norm.weight"] = {hidden};
      out[p + "ffn_norm.weight"] = {hidden};
      linear(p + "attention.wqkv", q + 2 * kv, hidden, bias);
      linear(p + "attention.wo", hidden, q, bias);
      linear(p + "feed_forward.w1", inter, hidden, false);
      linear(p + "feed_forward.w3", inter, hidden, false);
      linear(p + "feed_forward.w2", hidden, inter, false);
    }
    out["model.norm.weight"] = {hidden};
    if (!tied) out["output.weight"] = {vocab, hidden};
    return out;
  }
  bool qkv_bias = false, o_bias = false;
  if (arch == "Qwen2ForCausalLM") qkv_bias = true;
  if (arch == "InternLMForCausalLM") qkv_bias = o_bias = c.value("bias", true);
  if (arch == "LlamaForCausalLM") qkv_bias = o_bias = c.value("attention_bias", false);
  out["model.embed_tokens.weight"] = {vocab, hidden};
  for (int64_t i = 0; i < layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    out[p + "input_layernorm.weight"] = {hidden};
    out[p + "post_attention_layernorm.weight"] = {hidden};
    linear(p + "self_attn.q_proj", q, hidden, qkv_bias);
    linear(p + "self_attn.k_proj", kv, hidden, qkv_bias);
    linear(p + "self_attn.v_proj", kv, hidden, qkv_bias);
    linear(p + "self_attn.o_proj", hidden, q, o_bias);
    linear(p + "mlp.gate_proj", inter, hidden, false);
    linear(p + "mlp.up_proj", inter, hidden, false);
    linear(p + "mlp.down_proj", hidden, inter, false);
  }
  out["model.norm.weight"] = {hidden};
  if (!tied) out["lm_head.weight"] = {vocab, hidden};
  return out;
}

std::vector<float> AsFloats(const frontend::SafetensorsTensor& t) {
  std::vector<float> out(t.data.size / (t.dtype == ir::DType::kF32 ? 4 : 2));
  for (size_t i = 0; i < out.size(); ++i) {
    if (t.dtype == ir::DType::kF32) {
      std::memcpy(&out[i], t.data.bytes + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, t.data.bytes + 2 * i, 2);
      out[i] = t.dtype == ir::DType::kF16 ? ir::HalfToFloat(h) : ir::Bf16ToFloat(h);
    }
  }
  return out;
}

TEST(SynthTest, EveryArchitectureHasExactlyTheHuggingFaceTensors) {
  for (const char* name : kSmallConfigs) {
    SCOPED_TRACE(name);
    const nlohmann::json config = ReadJson(ConfigPath(name));
    const std::string dir = TempDir(name);
    KVCC_ASSERT_OK_AND_ASSIGN(result, SynthesizeCheckpoint(ConfigPath(name), dir, Options(1)));
    EXPECT_EQ(result.plan.architecture, config["architectures"][0].get<std::string>());
    KVCC_ASSERT_OK_AND_ASSIGN(ckpt, frontend::Checkpoint::Open(dir));
    const auto expected = ExpectedTensors(config);
    std::vector<std::string> expected_names;
    for (const auto& [n, shape] : expected) expected_names.push_back(n);
    EXPECT_EQ(ckpt->Names(), expected_names);
    uint64_t bytes = 0;
    for (const auto& [n, shape] : expected) {
      if (!ckpt->Has(n)) continue;
      KVCC_ASSERT_OK_AND_ASSIGN(t, ckpt->Get(n));
      EXPECT_EQ(t.shape, shape) << n;
      EXPECT_EQ(t.dtype, result.dtype) << n;
      bytes += t.data.size;
    }
    EXPECT_EQ(bytes, result.weight_bytes);
  }
}

TEST(SynthTest, ConfigHighlightsAreWhatTheConfigsPromise) {
  // The configs exist to cover these cases; keep them honest.
  auto gqa = ReadJson(ConfigPath("llama-hd128-gqa"));
  EXPECT_EQ(gqa["head_dim"], 128);
  EXPECT_EQ(gqa["num_attention_heads"].get<int>() / gqa["num_key_value_heads"].get<int>(), 4);
  auto mha = ReadJson(ConfigPath("llama-hd64-mha"));
  EXPECT_EQ(mha["hidden_size"].get<int>() / mha["num_attention_heads"].get<int>(), 64);

  const std::string qwen = TempDir("qwen");
  KVCC_ASSERT_OK(SynthesizeCheckpoint(ConfigPath("qwen2-bias-tied"), qwen, Options(1)).status());
  KVCC_ASSERT_OK_AND_ASSIGN(q, frontend::Checkpoint::Open(qwen));
  EXPECT_TRUE(q->Has("model.layers.0.self_attn.k_proj.bias"));
  EXPECT_FALSE(q->Has("model.layers.0.self_attn.o_proj.bias"));
  EXPECT_FALSE(q->Has("lm_head.weight"));  // tied

  const std::string ilm2 = TempDir("internlm2");
  KVCC_ASSERT_OK(SynthesizeCheckpoint(ConfigPath("internlm2-gqa"), ilm2, Options(1)).status());
  KVCC_ASSERT_OK_AND_ASSIGN(i2, frontend::Checkpoint::Open(ilm2));
  KVCC_ASSERT_OK_AND_ASSIGN(wqkv, i2->Get("model.layers.1.attention.wqkv.weight"));
  // 8 query heads over 2 KV heads: per KV group 4 q heads + k + v, head_dim 64.
  EXPECT_EQ(wqkv.shape, (std::vector<int64_t>{2 * (4 + 2) * 64, 512}));
  EXPECT_TRUE(i2->Has("output.weight"));

  const std::string ilm = TempDir("internlm");
  KVCC_ASSERT_OK(SynthesizeCheckpoint(ConfigPath("internlm-bias"), ilm, Options(1)).status());
  KVCC_ASSERT_OK_AND_ASSIGN(i1, frontend::Checkpoint::Open(ilm));
  EXPECT_TRUE(i1->Has("model.layers.0.self_attn.o_proj.bias"));
  EXPECT_TRUE(i1->Has("model.layers.0.self_attn.q_proj.bias"));
}

// InternLM2 synth holds the same model as LLaMA synth with equal shapes and seed: every tensor
// equals its LLaMA counterpart, and wqkv, viewed as InternLM2's modeling code views it
// ([kv_heads, group + 2, head_dim, hidden]: the group's q heads, then k, then v), splits into
// exactly LLaMA's q_proj, k_proj and v_proj.
TEST(SynthTest, InternLM2IsTheLlamaModelInInternLM2Layout) {
  nlohmann::json ilm2 = ReadJson(ConfigPath("internlm2-gqa"));
  ilm2["bias"] = true;  // cover the fused bias too
  nlohmann::json llama = ilm2;
  llama.erase("auto_map");
  llama.erase("bias");
  llama["architectures"] = {"LlamaForCausalLM"};
  llama["model_type"] = "llama";
  llama["attention_bias"] = true;
  const std::string cfg_dir = TempDir("cfg");
  std::ofstream(cfg_dir + "/internlm2.json") << ilm2.dump();
  std::ofstream(cfg_dir + "/llama.json") << llama.dump();
  const std::string a = TempDir("internlm2"), b = TempDir("llama");
  KVCC_ASSERT_OK(SynthesizeCheckpoint(cfg_dir + "/internlm2.json", a, Options(9)).status());
  KVCC_ASSERT_OK(SynthesizeCheckpoint(cfg_dir + "/llama.json", b, Options(9)).status());
  KVCC_ASSERT_OK_AND_ASSIGN(i2, frontend::Checkpoint::Open(a));
  KVCC_ASSERT_OK_AND_ASSIGN(ll, frontend::Checkpoint::Open(b));

  auto same = [&](const std::string& ilm2_name, const std::string& llama_name) {
    auto x = i2->Get(ilm2_name);
    auto y = ll->Get(llama_name);
    ASSERT_TRUE(x.ok() && y.ok()) << ilm2_name << " / " << llama_name;
    ASSERT_EQ(x->shape, y->shape) << ilm2_name;
    EXPECT_EQ(std::memcmp(x->data.bytes, y->data.bytes, x->data.size), 0) << ilm2_name;
  };
  same("model.tok_embeddings.weight", "model.embed_tokens.weight");
  same("model.norm.weight", "model.norm.weight");
  same("output.weight", "lm_head.weight");
  const int64_t layers = ilm2["num_hidden_layers"], hidden = ilm2["hidden_size"];
  const int64_t heads = ilm2["num_attention_heads"], kv_heads = ilm2["num_key_value_heads"];
  const int64_t d = hidden / heads, group = heads / kv_heads;
  for (int64_t i = 0; i < layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    same(p + "attention_norm.weight", p + "input_layernorm.weight");
    same(p + "ffn_norm.weight", p + "post_attention_layernorm.weight");
    same(p + "attention.wo.weight", p + "self_attn.o_proj.weight");
    same(p + "attention.wo.bias", p + "self_attn.o_proj.bias");
    same(p + "feed_forward.w1.weight", p + "mlp.gate_proj.weight");
    same(p + "feed_forward.w3.weight", p + "mlp.up_proj.weight");
    same(p + "feed_forward.w2.weight", p + "mlp.down_proj.weight");
    for (const std::string suffix : {".weight", ".bias"}) {
      SCOPED_TRACE(p + suffix);
      KVCC_ASSERT_OK_AND_ASSIGN(wqkv, i2->Get(p + "attention.wqkv" + suffix));
      KVCC_ASSERT_OK_AND_ASSIGN(q, ll->Get(p + "self_attn.q_proj" + suffix));
      KVCC_ASSERT_OK_AND_ASSIGN(k, ll->Get(p + "self_attn.k_proj" + suffix));
      KVCC_ASSERT_OK_AND_ASSIGN(v, ll->Get(p + "self_attn.v_proj" + suffix));
      const size_t row = (suffix == ".weight" ? hidden : 1) * 2;  // f16 bytes per row
      for (int64_t g = 0; g < kv_heads; ++g) {
        for (int64_t s = 0; s < group + 2; ++s) {
          const uint8_t* fused = wqkv.data.bytes + ((g * (group + 2) + s) * d) * row;
          const uint8_t* want = s < group ? q.data.bytes + ((g * group + s) * d) * row
                                : s == group ? k.data.bytes + g * d * row
                                             : v.data.bytes + g * d * row;
          ASSERT_EQ(std::memcmp(fused, want, d * row), 0) << "kv head " << g << " slot " << s;
        }
      }
    }
  }
}

TEST(SynthTest, SameSeedSameBytesOtherSeedOtherValues) {
  const std::string a = TempDir("a"), b = TempDir("b"), c = TempDir("c");
  KVCC_ASSERT_OK(SynthesizeCheckpoint(ConfigPath("llama-hd64-mha"), a, Options(7)).status());
  SynthOptions one_thread = Options(7);
  one_thread.threads = 1;
  KVCC_ASSERT_OK(SynthesizeCheckpoint(ConfigPath("llama-hd64-mha"), b, one_thread).status());
  KVCC_ASSERT_OK(SynthesizeCheckpoint(ConfigPath("llama-hd64-mha"), c, Options(8)).status());
  const std::string bytes_a = ReadFileBytes(a + "/model.safetensors");
  ASSERT_GT(bytes_a.size(), 1000u);
  EXPECT_EQ(bytes_a, ReadFileBytes(b + "/model.safetensors")) << "thread count changed the output";
  EXPECT_EQ(ReadFileBytes(a + "/config.json"), ReadFileBytes(c + "/config.json"));

  KVCC_ASSERT_OK_AND_ASSIGN(ca, frontend::Checkpoint::Open(a));
  KVCC_ASSERT_OK_AND_ASSIGN(cc, frontend::Checkpoint::Open(c));
  for (const std::string& name : ca->Names()) {
    KVCC_ASSERT_OK_AND_ASSIGN(ta, ca->Get(name));
    KVCC_ASSERT_OK_AND_ASSIGN(tc, cc->Get(name));
    ASSERT_EQ(ta.data.size, tc.data.size);
    EXPECT_NE(std::memcmp(ta.data.bytes, tc.data.bytes, ta.data.size), 0)
        << name << " did not change with the seed";
  }
  // Distinct tensors of one checkpoint are not copies of each other.
  KVCC_ASSERT_OK_AND_ASSIGN(k, ca->Get("model.layers.0.self_attn.k_proj.weight"));
  KVCC_ASSERT_OK_AND_ASSIGN(v, ca->Get("model.layers.0.self_attn.v_proj.weight"));
  EXPECT_NE(std::memcmp(k.data.bytes, v.data.bytes, k.data.size), 0);
}

TEST(SynthTest, ValuesFollowThePlannedDistributions) {
  const std::string dir = TempDir("f32");
  KVCC_ASSERT_OK_AND_ASSIGN(
      result, SynthesizeCheckpoint(ConfigPath("qwen2-bias-tied"), dir, Options(3, ir::DType::kF32)));
  KVCC_ASSERT_OK_AND_ASSIGN(ckpt, frontend::Checkpoint::Open(dir));
  const nlohmann::json config = ReadJson(ConfigPath("qwen2-bias-tied"));
  const double hidden = config["hidden_size"], inter = config["intermediate_size"];
  for (const SynthTensor& planned : result.plan.tensors) {
    SCOPED_TRACE(planned.name);
    KVCC_ASSERT_OK_AND_ASSIGN(t, ckpt->Get(planned.name));
    const std::vector<float> v = AsFloats(t);
    double sum = 0, sq = 0;
    for (float x : v) {
      ASSERT_TRUE(std::isfinite(x));
      sum += x;
    }
    const double mean = sum / v.size();
    for (float x : v) sq += (x - mean) * (x - mean);
    const double stddev = std::sqrt(sq / v.size());
    // Independent expectations from the config: linears N(0, 1/fan_in), norms near 1,
    // biases small, the tied embedding scaled for logits of spread ~2.
    double want_mean = 0, want_std = 0;
    const std::string& n = planned.name;
    if (n.find("norm") != std::string::npos) {
      want_mean = 1.0;
      want_std = 0.1;
    } else if (n.find(".bias") != std::string::npos) {
      want_std = 0.1;
    } else if (n == "model.embed_tokens.weight") {
      want_std = 2.0 / std::sqrt(hidden);
    } else if (n.find("down_proj") != std::string::npos) {
      want_std = 1.0 / std::sqrt(inter);
    } else {
      want_std = 1.0 / std::sqrt(hidden);
    }
    // Standard error of the mean and std for n samples, with generous slack.
    const double tolerance = 5.0 * want_std / std::sqrt(static_cast<double>(v.size()));
    EXPECT_NEAR(mean, want_mean, tolerance + 1e-6);
    EXPECT_NEAR(stddev, want_std, want_std * 0.02 + 2 * tolerance);
    if (v.size() >= 4096) {
      // Gaussian shape: about 68.3% of values within one standard deviation.
      size_t within = 0;
      for (float x : v) within += std::abs(x - want_mean) <= want_std;
      EXPECT_NEAR(static_cast<double>(within) / v.size(), 0.6827, 0.02);
    }
  }
}

TEST(SynthTest, HalfPrecisionOutputsAreRoundedFromTheSameValues) {
  const std::string f32 = TempDir("f32"), f16 = TempDir("f16"), bf16 = TempDir("bf16");
  const std::string cfg = ConfigPath("mistral-gqa");
  KVCC_ASSERT_OK(SynthesizeCheckpoint(cfg, f32, Options(5, ir::DType::kF32)).status());
  KVCC_ASSERT_OK(SynthesizeCheckpoint(cfg, f16, Options(5, ir::DType::kF16)).status());
  KVCC_ASSERT_OK(SynthesizeCheckpoint(cfg, bf16, Options(5, ir::DType::kBF16)).status());
  EXPECT_EQ(ReadJson(f32 + "/config.json")["torch_dtype"], "float32");
  EXPECT_EQ(ReadJson(f16 + "/config.json")["torch_dtype"], "float16");
  EXPECT_EQ(ReadJson(bf16 + "/config.json")["torch_dtype"], "bfloat16");
  KVCC_ASSERT_OK_AND_ASSIGN(a, frontend::Checkpoint::Open(f32));
  KVCC_ASSERT_OK_AND_ASSIGN(h, frontend::Checkpoint::Open(f16));
  KVCC_ASSERT_OK_AND_ASSIGN(b, frontend::Checkpoint::Open(bf16));
  for (const std::string& name : {std::string("model.embed_tokens.weight"),
                                  std::string("model.layers.1.mlp.down_proj.weight")}) {
    const std::vector<float> full = AsFloats(*a->Get(name));
    const std::vector<float> half = AsFloats(*h->Get(name));
    const std::vector<float> brain = AsFloats(*b->Get(name));
    ASSERT_EQ(full.size(), half.size());
    ASSERT_EQ(full.size(), brain.size());
    for (size_t i = 0; i < full.size(); ++i) {
      ASSERT_EQ(half[i], ir::RoundToHalf(full[i])) << name << "[" << i << "]";
      ASSERT_EQ(brain[i], ir::Bf16ToFloat(ir::FloatToBf16(full[i])))
          << name << "[" << i << "]";
    }
  }
}

TEST(SynthTest, DTypeDefaultsToTheConfigsTorchDType) {
  const std::string dir = TempDir("bf16");
  // llama-hd128-gqa.json says bfloat16.
  KVCC_ASSERT_OK_AND_ASSIGN(result,
                            SynthesizeCheckpoint(ConfigPath("llama-hd128-gqa"), dir, Options(1)));
  EXPECT_EQ(result.dtype, ir::DType::kBF16);
  KVCC_ASSERT_OK_AND_ASSIGN(ckpt, frontend::Checkpoint::Open(dir));
  EXPECT_EQ(ckpt->Get("model.norm.weight")->dtype, ir::DType::kBF16);
  // Everything else in config.json is carried over unchanged.
  nlohmann::json in = ReadJson(ConfigPath("llama-hd128-gqa"));
  nlohmann::json out = ReadJson(dir + "/config.json");
  EXPECT_EQ(in, out);
}

TEST(SynthTest, ShardsWithAnIndexWithoutChangingValues) {
  const std::string whole = TempDir("whole"), sharded = TempDir("sharded");
  const std::string cfg = ConfigPath("llama-hd64-mha");
  KVCC_ASSERT_OK(SynthesizeCheckpoint(cfg, whole, Options(11)).status());
  SynthOptions small = Options(11);
  small.shard_bytes = 600 * 1024;
  KVCC_ASSERT_OK_AND_ASSIGN(result, SynthesizeCheckpoint(cfg, sharded, small));
  ASSERT_GT(result.files.size(), 2u);
  EXPECT_FALSE(fs::exists(sharded + "/model.safetensors"));
  const nlohmann::json index = ReadJson(sharded + "/model.safetensors.index.json");
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), result.weight_bytes);
  for (size_t i = 0; i < result.files.size(); ++i) {
    EXPECT_TRUE(fs::exists(result.files[i]));
    // Each shard stays under the limit unless one tensor alone exceeds it.
    KVCC_ASSERT_OK_AND_ASSIGN(file, frontend::SafetensorsFile::Open(result.files[i]));
    uint64_t data = file->entries().back().end;
    EXPECT_TRUE(data <= small.shard_bytes || file->entries().size() == 1) << result.files[i];
  }

  KVCC_ASSERT_OK_AND_ASSIGN(a, frontend::Checkpoint::Open(whole));
  KVCC_ASSERT_OK_AND_ASSIGN(b, frontend::Checkpoint::Open(sharded));
  EXPECT_EQ(b->Files().size(), result.files.size());
  ASSERT_EQ(a->Names(), b->Names());
  for (const std::string& name : a->Names()) {
    KVCC_ASSERT_OK_AND_ASSIGN(ta, a->Get(name));
    KVCC_ASSERT_OK_AND_ASSIGN(tb, b->Get(name));
    ASSERT_EQ(ta.data.size, tb.data.size);
    EXPECT_EQ(std::memcmp(ta.data.bytes, tb.data.bytes, ta.data.size), 0) << name;
    EXPECT_EQ(index["weight_map"][name], fs::path(tb.file).filename().string());
  }

  // Re-synthesizing unsharded into the same directory leaves no stale shards or index behind.
  KVCC_ASSERT_OK(SynthesizeCheckpoint(cfg, sharded, Options(11)).status());
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(sharded)) left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"config.json", "model.safetensors"}));
}

TEST(SynthTest, LargeConfigsArePlannedAtFullSize) {
  // The memory benchmark's 7B configs: planning only (writing 13 GiB is a benchmark's job).
  KVCC_ASSERT_OK_AND_ASSIGN(llama, PlanSynthCheckpoint(ReadFileBytes(ConfigPath("llama-7b")),
                                                       "llama-7b.json"));
  int64_t params = 0;
  for (const SynthTensor& t : llama.tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    params += n;
  }
  // LLaMA-7B: 32 x (4 x 4096^2 + 3 x 4096 x 11008 + 2 x 4096) + 2 x 32000 x 4096 + 4096.
  EXPECT_EQ(params, 32 * (4 * 4096LL * 4096 + 3 * 4096LL * 11008 + 2 * 4096) +
                        2 * 32000LL * 4096 + 4096);
  KVCC_ASSERT_OK_AND_ASSIGN(internlm, PlanSynthCheckpoint(ReadFileBytes(ConfigPath("internlm-chat-7b")),
                                                          "internlm-chat-7b.json"));
  EXPECT_EQ(internlm.architecture, "InternLMForCausalLM");
  EXPECT_EQ(internlm.tensors.front().shape, (std::vector<int64_t>{103168, 4096}));
  EXPECT_EQ(internlm.tensors.size(), 2 + 32 * (2 + 4 * 2 + 3) + 1u);
}

void ExpectPlanError(const std::string& json, const std::vector<std::string>& needles) {
  auto plan = PlanSynthCheckpoint(json, "cfg.json");
  ASSERT_FALSE(plan.ok()) << json;
  const std::string message(plan.status().message());
  EXPECT_NE(message.find("cfg.json"), std::string::npos) << message;
  for (const std::string& needle : needles) {
    EXPECT_NE(message.find(needle), std::string::npos) << "lacks '" << needle << "': " << message;
  }
}

TEST(SynthTest, BadConfigsNameTheKeyAndValue) {
  nlohmann::json base = ReadJson(ConfigPath("llama-hd64-mha"));
  auto with = [&](const std::string& key, const nlohmann::json& value) {
    nlohmann::json j = base;
    j[key] = value;
    return j.dump();
  };
  auto without = [&](const std::string& key) {
    nlohmann::json j = base;
    j.erase(key);
    return j.dump();
  };
  ExpectPlanError(with("architectures", {"GPT2LMHeadModel"}), {"architectures", "GPT2LMHeadModel"});
  ExpectPlanError(without("architectures"), {"architectures"});
  ExpectPlanError(without("hidden_size"), {"hidden_size", "missing"});
  ExpectPlanError(with("vocab_size", -5), {"vocab_size", "-5"});
  ExpectPlanError(with("num_hidden_layers", "two"), {"num_hidden_layers", "\"two\""});
  ExpectPlanError(with("num_key_value_heads", 3), {"num_attention_heads", "num_key_value_heads", "3"});
  ExpectPlanError(with("tie_word_embeddings", "yes"), {"tie_word_embeddings"});
  nlohmann::json odd = base;
  odd.erase("head_dim");
  odd["hidden_size"] = 250;
  ExpectPlanError(odd.dump(), {"hidden_size", "250", "num_attention_heads"});
  const std::string deep = std::string(1000000, '[') + std::string(1000000, ']');
  ExpectPlanError("{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": " + deep + "}",
                  {"hidden_size", "a JSON array"});
  ExpectPlanError("{\"architectures\": " + deep + "}", {"architectures", "a list of 1"});
  ExpectPlanError(with("vocab_size", int64_t{1} << 40), {"vocab_size", "limit"});
  ExpectPlanError(with("num_hidden_layers", 1000000000), {"num_hidden_layers", "limit"});
  nlohmann::json wide = base;
  wide["vocab_size"] = 1 << 24;
  wide["hidden_size"] = 1 << 16;
  wide["num_attention_heads"] = 1024;
  wide["num_key_value_heads"] = 1024;
  wide["head_dim"] = 64;
  ExpectPlanError(wide.dump(), {"model.embed_tokens.weight", "2^36"});
  ExpectPlanError("[]", {"not a JSON object"});
  ExpectPlanError("{\"architectures\": ", {"not a JSON object"});

  auto missing = SynthesizeCheckpoint(TempDir("x") + "/none.json", TempDir("out"), Options(1));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("none.json"), std::string::npos);
  auto i4 = SynthesizeCheckpoint(ConfigPath("llama-hd64-mha"), TempDir("out"),
                                 Options(1, ir::DType::kI4));
  ASSERT_FALSE(i4.ok());
  EXPECT_NE(i4.status().message().find("i4"), std::string::npos);
}

int RunCommand(const std::string& command) {
  const int rc = std::system(command.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TEST(SynthTest, CommandLineWritesACheckpoint) {
  const std::string kvcc = std::string(KVCC_BINARY_DIR) + "/tools/kvcc";
  if (!fs::exists(kvcc)) GTEST_SKIP() << "kvcc binary not built at " << kvcc;
  const std::string dir = TempDir("cli");
  const std::string log = dir + ".log";
  ASSERT_EQ(RunCommand(kvcc + " synth --config " + ConfigPath("internlm2-gqa") + " -o " + dir +
                       " --seed 4 --dtype bf16 --shard-bytes 1000000 > " + log + " 2>&1"),
            0)
      << ReadFileBytes(log);
  EXPECT_NE(ReadFileBytes(log).find("InternLM2ForCausalLM"), std::string::npos) << ReadFileBytes(log);
  EXPECT_TRUE(fs::exists(dir + "/model.safetensors.index.json"));
  KVCC_ASSERT_OK_AND_ASSIGN(ckpt, frontend::Checkpoint::Open(dir));
  EXPECT_EQ(ckpt->Get("output.weight")->dtype, ir::DType::kBF16);
  // Same bytes as the library call with the same seed.
  const std::string lib = TempDir("lib");
  SynthOptions o = Options(4, ir::DType::kBF16);
  o.shard_bytes = 1000000;
  KVCC_ASSERT_OK(SynthesizeCheckpoint(ConfigPath("internlm2-gqa"), lib, o).status());
  EXPECT_EQ(ReadFileBytes(dir + "/model-00001-of-00003.safetensors"),
            ReadFileBytes(lib + "/model-00001-of-00003.safetensors"));

  EXPECT_NE(RunCommand(kvcc + " synth --config " + ConfigPath("internlm2-gqa") + " -o " + dir +
                       " --dtype q7 > " + log + " 2>&1"),
            0);
  EXPECT_NE(ReadFileBytes(log).find("q7"), std::string::npos) << ReadFileBytes(log);
}

TEST(SynthTest, TransformersLoadsAndRunsTheCheckpoints) {
  const char* python = std::getenv("KVCC_PYTHON");
  if (python == nullptr || *python == '\0') {
    GTEST_SKIP() << "KVCC_PYTHON is not set (scripts/test.sh sets it)";
  }
  std::string dirs;
  for (const char* name : kSmallConfigs) {
    const std::string dir = TempDir(name);
    KVCC_ASSERT_OK(SynthesizeCheckpoint(ConfigPath(name), dir, Options(21)).status());
    dirs += " " + dir;
  }
  // A sharded f16 Llama too: transformers must follow the index.
  const std::string sharded = TempDir("sharded");
  SynthOptions o = Options(22, ir::DType::kF16);
  o.shard_bytes = 1 << 20;
  KVCC_ASSERT_OK(SynthesizeCheckpoint(ConfigPath("llama-hd128-gqa"), sharded, o).status());
  dirs += " " + sharded;
  const std::string log = TempDir("log") + "/check_synth.log";
  const int rc = RunCommand(std::string(python) + " " + SourcePath("tests/python/check_synth.py") +
                            dirs + " > " + log + " 2>&1");
  EXPECT_EQ(rc, 0) << ReadFileBytes(log);
}

}  // namespace
}  // namespace kvcc::testing
