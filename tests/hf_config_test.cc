// config.json parsing per architecture in the layouts of transformers 4 and 5 (golden configs
// in tests/data/configs, their rotary frequencies checked against transformers through
// tests/python/rope_oracle.py when $KVCC_PYTHON is set), rope scaling variants, every refused
// input and the warnings for keys kvcc does not know.
#include "frontend/hf_config.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "gtest/gtest.h"
#include "runtime/rotary.h"
#include "tests/test_util.h"

namespace kvcc::frontend {
namespace {

using Json = nlohmann::json;

// A LLaMA-2-7B config.json as Hugging Face ships it.
Json Llama7B() {
  return Json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 10000.0,
    "tie_word_embeddings": false, "torch_dtype": "float16", "vocab_size": 32000,
    "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu"})");
}

absl::StatusOr<ir::ModelConfig> Parse(const Json& j) {
  return ParseHfConfig(j.dump(), "/models/x/config.json");
}

// The parse must fail and the message must name the file, the key and the offending value.
void ExpectError(const Json& j, const std::string& key, const std::string& value) {
  auto c = Parse(j);
  ASSERT_FALSE(c.ok()) << "accepted: " << j.dump();
  const std::string msg(c.status().message());
  EXPECT_NE(msg.find("/models/x/config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'" + key + "'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(value), std::string::npos) << msg;
}

TEST(HfConfigTest, Llama7B) {
  KVCC_ASSERT_OK_AND_ASSIGN(c, Parse(Llama7B()));
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.num_layers, 32);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 32);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.intermediate_size, 11008);
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.max_position, 4096);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.rope_scaling.type, "none");
  EXPECT_FALSE(c.tie_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.weight_dtype, ir::DType::kF16);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_TRUE(c.warnings.empty()) << c.warnings.front();
  EXPECT_FALSE(c.o_bias);
  // LLaMA-2-7B's published parameter count.
  EXPECT_EQ(c.NumParameters(), 6738415616);
}

TEST(HfConfigTest, DefaultsForOptionalKeys) {
  Json j = Llama7B();
  for (const char* key : {"num_key_value_heads", "rms_norm_eps", "rope_theta", "rope_scaling",
                          "tie_word_embeddings", "torch_dtype", "bos_token_id", "eos_token_id",
                          "hidden_act", "max_position_embeddings"}) {
    j.erase(key);
  }
  KVCC_ASSERT_OK_AND_ASSIGN(c, Parse(j));
  EXPECT_EQ(c.num_kv_heads, 32);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.max_position, 2048);
  EXPECT_EQ(c.weight_dtype, ir::DType::kF32);  // what transformers loads without torch_dtype
  EXPECT_EQ(c.bos_token_id, -1);
  EXPECT_TRUE(c.eos_token_ids.empty());
}

TEST(HfConfigTest, ExplicitHeadDimAndTiedEmbeddings) {
  // stories260K's shape: head_dim given explicitly, GQA, tied.
  Json j = Llama7B();
  j["hidden_size"] = 64;
  j["num_attention_heads"] = 8;
  j["num_key_value_heads"] = 4;
  j["head_dim"] = 8;
  j["tie_word_embeddings"] = true;
  j["torch_dtype"] = "bfloat16";
  j["eos_token_id"] = Json::array({7, 2});
  KVCC_ASSERT_OK_AND_ASSIGN(c, Parse(j));
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_EQ(c.weight_dtype, ir::DType::kBF16);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{7, 2}));  // generation stops at either
  // Gemma-style head_dim * heads != hidden is allowed when head_dim is explicit.
  j["head_dim"] = 16;
  KVCC_ASSERT_OK_AND_ASSIGN(c2, Parse(j));
  EXPECT_EQ(c2.head_dim, 16);
}

TEST(HfConfigTest, TheRealStories260KConfig) {
  KVCC_ASSERT_OK_AND_ASSIGN(c, LoadHfConfig(testing::SourcePath("models/stories260K")));
  EXPECT_EQ(c.num_layers, 5);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.intermediate_size, 172);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_EQ(c.weight_dtype, ir::DType::kF32);
  EXPECT_EQ(c.NumParameters(), 260032);  // the model card's count
}

TEST(HfConfigTest, Mistral) {
  Json j = Llama7B();
  j["architectures"] = {"MistralForCausalLM"};
  j["num_key_value_heads"] = 8;
  j["max_position_embeddings"] = 32768;
  j["sliding_window"] = 4096;
  KVCC_ASSERT_OK_AND_ASSIGN(c, Parse(j));
  EXPECT_EQ(c.architecture, "MistralForCausalLM");
  EXPECT_EQ(c.num_kv_heads, 8);
  // Full attention equals sliding-window attention only inside the window.
  EXPECT_EQ(c.max_position, 4096);
  j["sliding_window"] = nullptr;
  KVCC_ASSERT_OK_AND_ASSIGN(c2, Parse(j));
  EXPECT_EQ(c2.max_position, 32768);
}

TEST(HfConfigTest, Qwen2AlwaysHasQkvBias) {
  Json j = Json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "hidden_size": 896, "intermediate_size": 4864,
    "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "sliding_window": 32768, "use_sliding_window": false, "tie_word_embeddings": true,
    "torch_dtype": "bfloat16", "vocab_size": 151936, "bos_token_id": 151643,
    "eos_token_id": 151645, "hidden_act": "silu"})");
  KVCC_ASSERT_OK_AND_ASSIGN(c, Parse(j));
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.max_position, 32768);
  // Qwen2-0.5B's published parameter count (494M, tied embeddings).
  EXPECT_EQ(c.NumParameters(), 494032768);
  // A window no shorter than the context slides nowhere.
  j["use_sliding_window"] = true;
  KVCC_ASSERT_OK(Parse(j).status());
  // Layers >= max_window_layers (28 by default) slide: with a shorter window on some of the
  // 24 layers the model is refused; on all of them the context is capped at the window.
  j["sliding_window"] = 4096;
  KVCC_ASSERT_OK(Parse(j).status());
  j["max_window_layers"] = 20;
  ExpectError(j, "use_sliding_window", "true");
  j["max_window_layers"] = 0;
  KVCC_ASSERT_OK_AND_ASSIGN(capped, Parse(j));
  EXPECT_EQ(capped.max_position, 4096);
}

TEST(HfConfigTest, InternLM2) {
  Json j = Json::parse(R"({
    "architectures": ["InternLM2ForCausalLM"], "bias": false, "hidden_size": 4096,
    "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "max_position_embeddings": 32768, "rms_norm_eps": 1e-05,
    "rope_scaling": {"type": "dynamic", "factor": 2.0}, "rope_theta": 1000000,
    "tie_word_embeddings": false, "torch_dtype": "bfloat16", "vocab_size": 92544,
    "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu"})");
  KVCC_ASSERT_OK_AND_ASSIGN(c, Parse(j));
  EXPECT_EQ(c.architecture, "InternLM2ForCausalLM");
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);  // an integer in the file
  EXPECT_EQ(c.rope_scaling.type, "dynamic");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 2.0);
  EXPECT_EQ(c.rope_scaling.original_max_position, 32768);
  // InternLM2-7B's published count: 7.74B.
  EXPECT_EQ(c.NumParameters(), 7737708544);
  j.erase("bias");  // InternLM2Config defaults bias to true: q/k/v and o biases
  KVCC_ASSERT_OK_AND_ASSIGN(c2, Parse(j));
  EXPECT_TRUE(c2.qkv_bias);
  EXPECT_TRUE(c2.o_bias);
}

TEST(HfConfigTest, InternLMWithBiasAndRotary) {
  Json j = Llama7B();
  j["architectures"] = {"InternLMForCausalLM"};
  j["bias"] = true;
  j["vocab_size"] = 103168;
  j["rotary"] = {{"base", 10000}, {"type", "dynamic"}, {"scaling_factor", 2.0}};
  KVCC_ASSERT_OK_AND_ASSIGN(c, Parse(j));
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_TRUE(c.o_bias);
  EXPECT_EQ(c.rope_scaling.type, "dynamic");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 2.0);
  ir::ModelConfig no_o_bias = c;
  no_o_bias.o_bias = false;
  EXPECT_EQ(c.NumParameters(), no_o_bias.NumParameters() + 32 * 4096);  // o_proj biases
  j["rotary"] = {{"base", 10000}, {"type", "origin"}};
  KVCC_ASSERT_OK_AND_ASSIGN(c2, Parse(j));
  EXPECT_EQ(c2.rope_scaling.type, "none");
  j["rotary"] = {{"base", 10000}, {"type", "yarn"}};
  ExpectError(j, "rotary.type", "\"yarn\"");
}

TEST(HfConfigTest, RopeScalingLinearAndDynamicBothSpellings) {
  for (const char* key : {"type", "rope_type"}) {
    Json j = Llama7B();
    j["rope_scaling"] = {{key, "linear"}, {"factor", 4.0}};
    KVCC_ASSERT_OK_AND_ASSIGN(lin, Parse(j));
    EXPECT_EQ(lin.rope_scaling.type, "linear") << key;
    EXPECT_DOUBLE_EQ(lin.rope_scaling.factor, 4.0);
    j["rope_scaling"] = {{key, "dynamic"}, {"factor", 2.0}};
    KVCC_ASSERT_OK_AND_ASSIGN(dyn, Parse(j));
    EXPECT_EQ(dyn.rope_scaling.type, "dynamic") << key;
    EXPECT_EQ(dyn.rope_scaling.original_max_position, 4096);
    j["rope_scaling"] = {{key, "default"}};
    KVCC_ASSERT_OK_AND_ASSIGN(def, Parse(j));
    EXPECT_EQ(def.rope_scaling.type, "none");
  }
}

TEST(HfConfigTest, RopeScalingLlama3) {
  Json j = Llama7B();
  j["num_key_value_heads"] = 8;
  j["rope_theta"] = 500000.0;
  j["max_position_embeddings"] = 131072;
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  KVCC_ASSERT_OK_AND_ASSIGN(c, Parse(j));
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position, 8192);
  EXPECT_EQ(c.max_position, 131072);
  Json missing = j;
  missing["rope_scaling"].erase("original_max_position_embeddings");
  ExpectError(missing, "rope_scaling.original_max_position_embeddings", "missing");
  Json inverted = j;
  inverted["rope_scaling"]["high_freq_factor"] = 0.5;
  ExpectError(inverted, "rope_scaling.high_freq_factor", "0.5");
}

TEST(HfConfigTest, UnsupportedRopeScalingType) {
  Json j = Llama7B();
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}};
  ExpectError(j, "rope_scaling.type", "\"yarn\"");
  j["rope_scaling"] = {{"rope_type", "longrope"}, {"factor", 4.0}};
  ExpectError(j, "rope_scaling.rope_type", "\"longrope\"");
  j["rope_scaling"] = "linear";
  ExpectError(j, "rope_scaling", "\"linear\"");
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 0}};
  ExpectError(j, "rope_scaling.factor", "0");
}

TEST(HfConfigTest, MissingRequiredKeys) {
  for (const char* key : {"hidden_size", "num_hidden_layers", "num_attention_heads",
                          "intermediate_size", "vocab_size", "architectures"}) {
    Json j = Llama7B();
    j.erase(key);
    ExpectError(j, key, "missing");
  }
}

TEST(HfConfigTest, WrongTypes) {
  struct Case {
    const char* key;
    Json value;
    std::string shown;
  };
  const std::vector<Case> cases = {
      {"hidden_size", "4096", "\"4096\""},
      {"hidden_size", 4096.5, "4096.5"},
      {"hidden_size", -4096, "-4096"},
      {"hidden_size", 0, "0"},
      {"num_hidden_layers", Json::array({32}), "[32]"},
      {"num_attention_heads", true, "true"},
      {"vocab_size", 18446744073709551615ull, "18446744073709551615"},
      {"rms_norm_eps", "1e-5", "\"1e-5\""},
      {"rms_norm_eps", -1.0, "-1.0"},
      {"rope_theta", Json::object(), "{}"},
      {"tie_word_embeddings", "yes", "\"yes\""},
      {"torch_dtype", "int8", "\"int8\""},
      {"torch_dtype", 16, "16"},
      {"eos_token_id", "</s>", "\"</s>\""},
      {"eos_token_id", 32000, "32000"},  // outside the vocabulary
      {"max_position_embeddings", 1.5, "1.5"},
      {"architectures", "LlamaForCausalLM", "\"LlamaForCausalLM\""},
      {"architectures", Json::array(), "[]"},
      {"head_dim", 7, "7"},  // odd: rotary rotates pairs
  };
  for (const Case& c : cases) {
    Json j = Llama7B();
    j[c.key] = c.value;
    SCOPED_TRACE(j[c.key].dump());
    ExpectError(j, c.key, c.shown);
  }
}

TEST(HfConfigTest, UnknownArchitecture) {
  Json j = Llama7B();
  j["architectures"] = {"GPT2LMHeadModel"};
  ExpectError(j, "architectures", "GPT2LMHeadModel");
}

TEST(HfConfigTest, UnsupportedActivationAndBiases) {
  Json j = Llama7B();
  j["hidden_act"] = "gelu";
  ExpectError(j, "hidden_act", "\"gelu\"");
  j = Llama7B();
  j["mlp_bias"] = true;
  ExpectError(j, "mlp_bias", "true");
}

TEST(HfConfigTest, HeadsNotDivisibleByKvHeads) {
  Json j = Llama7B();
  j["num_key_value_heads"] = 5;
  ExpectError(j, "num_key_value_heads", "5");
  j = Llama7B();
  j["num_attention_heads"] = 30;  // 4096 / 30 is no integer head_dim
  j["num_key_value_heads"] = 30;
  ExpectError(j, "num_attention_heads", "30");
}

TEST(HfConfigTest, RequiredKeyGivenAsNull) {
  Json j = Llama7B();
  j["vocab_size"] = nullptr;
  ExpectError(j, "vocab_size", "null");
}

TEST(HfConfigTest, LlamaAttentionBiasCoversQkvAndOutput) {
  Json j = Llama7B();
  j["attention_bias"] = true;
  KVCC_ASSERT_OK_AND_ASSIGN(c, Parse(j));
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_TRUE(c.o_bias);
  // q, k, v and o biases: 4 x 4096 per layer.
  EXPECT_EQ(c.NumParameters(), 6738415616 + 32 * 4 * 4096);
  j["attention_bias"] = "yes";
  ExpectError(j, "attention_bias", "\"yes\"");
}

TEST(HfConfigTest, MistralSlidingWindowWithDynamicRopeIsRefused) {
  Json j = Llama7B();
  j["architectures"] = {"MistralForCausalLM"};
  j["max_position_embeddings"] = 32768;
  j["sliding_window"] = 4096;
  j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  ExpectError(j, "sliding_window", "4096");
}

TEST(HfConfigTest, MalformedJsonNeverCrashes) {
  const std::vector<std::string> texts = {
      "", "{", "[]", "null", "42", "\"config\"", "{\"architectures\": [1]}",
      "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 1e400}",
      std::string(100000, '['), "{\"a\": \"\xff\xfe\"}", "{}garbage"};
  for (const std::string& text : texts) {
    auto c = ParseHfConfig(text, "/models/x/config.json");
    EXPECT_FALSE(c.ok()) << text.substr(0, 40);
    EXPECT_NE(std::string(c.status().message()).find("/models/x/config.json"), std::string::npos);
  }
}

// Every key of a full config (rope_scaling included) replaced by values of every JSON type:
// each parse either succeeds with a usable config or fails naming the file, never crashes.
TEST(HfConfigTest, EveryKeyWithEveryValueTypeIsHandled) {
  Json base = Llama7B();
  base["head_dim"] = 128;
  base["rope_scaling"] = {{"rope_type", "llama3"},
                          {"factor", 8.0},
                          {"low_freq_factor", 1.0},
                          {"high_freq_factor", 4.0},
                          {"original_max_position_embeddings", 8192}};
  const std::vector<Json> values = {nullptr, true, false, "x", "", -1, 0, 1, 3, 1.5, -2.5, 1e300,
                                    Json::array(), Json::array({1, 2}), Json::object(),
                                    9223372036854775807LL, 18446744073709551615ULL};
  int accepted = 0, refused = 0;
  auto check = [&](const Json& j) {
    auto c = Parse(j);
    if (c.ok()) {
      ++accepted;
      EXPECT_GT(c->hidden_size, 0);
      EXPECT_GT(c->num_kv_heads, 0);
      EXPECT_EQ(c->num_heads % c->num_kv_heads, 0);
      EXPECT_EQ(c->head_dim % 2, 0);
      EXPECT_GT(c->rope_scaling.factor, 0.0);
    } else {
      ++refused;
      EXPECT_NE(std::string(c.status().message()).find("/models/x/config.json"),
                std::string::npos);
    }
  };
  for (const auto& [key, unused] : base.items()) {
    for (const Json& v : values) {
      Json j = base;
      j[key] = v;
      SCOPED_TRACE(key + " = " + v.dump());
      check(j);
    }
  }
  for (const auto& [key, unused] : base["rope_scaling"].items()) {
    for (const Json& v : values) {
      Json j = base;
      j["rope_scaling"][key] = v;
      SCOPED_TRACE("rope_scaling." + key + " = " + v.dump());
      check(j);
    }
  }
  EXPECT_GT(accepted, 0);
  EXPECT_GT(refused, 0);
}

TEST(HfConfigTest, LoadsFromFileOrDirectory) {
  const std::string dir = testing::TempDir("cfg");
  std::ofstream(dir + "/config.json") << Llama7B().dump(2);
  KVCC_ASSERT_OK_AND_ASSIGN(from_dir, LoadHfConfig(dir));
  KVCC_ASSERT_OK_AND_ASSIGN(from_file, LoadHfConfig(dir + "/config.json"));
  EXPECT_EQ(from_dir.ToJson(), from_file.ToJson());
  auto missing = LoadHfConfig(dir + "/nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find(dir + "/nope"), std::string::npos);
}

// ---- golden configs: both layouts of each architecture ----

const char* const kGoldenPairs[] = {"llama2-7b",       "llama3.1-8b",     "llama-linear",
                                    "llama-dynamic",   "mistral-7b-v0.1", "qwen2.5-0.5b-instruct",
                                    "internlm2-chat-7b", "internlm-chat-7b"};

std::string GoldenPath(const std::string& name) {
  return testing::SourcePath("tests/data/configs/" + name + ".json");
}

std::vector<std::string> AllGoldens() {
  std::vector<std::string> paths;
  for (const auto& e :
       std::filesystem::directory_iterator(testing::SourcePath("tests/data/configs"))) {
    paths.push_back(e.path().string());
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

TEST(HfConfigTest, GoldenConfigsReadTheSameInBothLayouts) {
  for (const char* name : kGoldenPairs) {
    SCOPED_TRACE(name);
    KVCC_ASSERT_OK_AND_ASSIGN(v4, LoadHfConfig(GoldenPath(std::string(name) + ".v4")));
    KVCC_ASSERT_OK_AND_ASSIGN(v5, LoadHfConfig(GoldenPath(std::string(name) + ".v5")));
    EXPECT_EQ(v4.ToJson(), v5.ToJson());
    EXPECT_TRUE(v4.warnings.empty()) << v4.warnings.front();
    EXPECT_TRUE(v5.warnings.empty()) << v5.warnings.front();
  }
  KVCC_ASSERT_OK_AND_ASSIGN(llama3, LoadHfConfig(GoldenPath("llama3.1-8b.v5")));
  EXPECT_EQ(llama3.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(llama3.rope_theta, 500000.0);
  EXPECT_EQ(llama3.rope_scaling.original_max_position, 8192);
  EXPECT_EQ(llama3.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(llama3.weight_dtype, ir::DType::kBF16);  // from `dtype`
  KVCC_ASSERT_OK_AND_ASSIGN(linear, LoadHfConfig(GoldenPath("llama-linear.v5")));
  EXPECT_EQ(linear.rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(linear.rope_scaling.factor, 4.0);
  KVCC_ASSERT_OK_AND_ASSIGN(mistral, LoadHfConfig(GoldenPath("mistral-7b-v0.1.v5")));
  EXPECT_EQ(mistral.max_position, 4096);  // capped at the sliding window
  KVCC_ASSERT_OK_AND_ASSIGN(qwen, LoadHfConfig(GoldenPath("qwen2.5-0.5b-instruct.v5")));
  EXPECT_DOUBLE_EQ(qwen.rope_theta, 1e6);
  EXPECT_EQ(qwen.max_position, 32768);
  KVCC_ASSERT_OK_AND_ASSIGN(nested, LoadHfConfig(GoldenPath("qwen2.5-0.5b-instruct-nested.v5")));
  EXPECT_EQ(nested.rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(nested.rope_scaling.factor, 4.0);
  EXPECT_DOUBLE_EQ(nested.rope_theta, 1e6);
  EXPECT_TRUE(nested.warnings.empty());
}

// kvcc's rotary frequencies for every golden config against those transformers computes from
// the same file: at load and, for dynamic NTK, at three times the trained context.
TEST(HfConfigTest, GoldenConfigsRopeMatchesTransformers) {
  const char* python = std::getenv("KVCC_PYTHON");
  if (python == nullptr || *python == '\0') GTEST_SKIP() << "KVCC_PYTHON is not set";
  const std::string dir = testing::TempDir("rope_oracle");
  std::string cmd = std::string("\"") + python + "\" " +
                    testing::SourcePath("tests/python/rope_oracle.py");
  for (const std::string& path : AllGoldens()) cmd += " " + path;
  cmd += " > " + dir + "/rope.json 2> " + dir + "/rope.log";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream f(dir + "/rope.json");
  const Json oracle = Json::parse(f);
  for (const std::string& path : AllGoldens()) {
    SCOPED_TRACE(path);
    KVCC_ASSERT_OK_AND_ASSIGN(c, LoadHfConfig(path));
    const Json& want = oracle.at("configs").at(path);
    EXPECT_EQ(want.at("attention_scaling").get<double>(), 1.0);
    runtime::RotaryParams p;
    p.heads = static_cast<int>(c.num_heads);
    p.head_dim = static_cast<int>(c.head_dim);
    p.theta = c.rope_theta;
    p.scaling = c.rope_scaling.type;
    p.factor = c.rope_scaling.factor;
    p.low_freq_factor = c.rope_scaling.low_freq_factor;
    p.high_freq_factor = c.rope_scaling.high_freq_factor;
    p.original_max_position = c.rope_scaling.original_max_position;
    p.max_position = c.max_position;
    for (const char* key : {"inv_freq", "long_inv_freq"}) {
      const auto expected = want.at(key).get<std::vector<double>>();
      const int64_t seq_len = key == std::string("inv_freq") ? 1 : want.at("seq_len").get<int64_t>();
      const std::vector<float> got = runtime::RotaryInvFreq(p, seq_len);
      ASSERT_EQ(got.size(), expected.size()) << key;
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_NEAR(got[i], expected[i], 2e-7 * expected[i]) << key << "[" << i << "]";
      }
    }
  }
}

TEST(HfConfigTest, RopeParametersOfTransformers5) {
  Json j = Llama7B();
  j.erase("rope_theta");
  j.erase("rope_scaling");
  j.erase("torch_dtype");
  j["dtype"] = "bfloat16";
  j["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 500000.0}, {"factor", 8.0},
                          {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                          {"original_max_position_embeddings", 8192}};
  KVCC_ASSERT_OK_AND_ASSIGN(c, Parse(j));
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.weight_dtype, ir::DType::kBF16);
  // rope_theta outside the dict is the fallback, as in transformers' standardize_rope_params.
  j["rope_parameters"] = {{"rope_type", "default"}};
  j["rope_theta"] = 250000.0;
  KVCC_ASSERT_OK_AND_ASSIGN(d, Parse(j));
  EXPECT_EQ(d.rope_scaling.type, "none");
  EXPECT_DOUBLE_EQ(d.rope_theta, 250000.0);
  // transformers 5 reads rope_scaling before rope_parameters.
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  KVCC_ASSERT_OK_AND_ASSIGN(both, Parse(j));
  EXPECT_EQ(both.rope_scaling.type, "linear");
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_type", "linear"}, {"factor", "2"}};
  ExpectError(j, "rope_parameters.factor", "\"2\"");
  j["rope_parameters"] = Json::array({1});
  ExpectError(j, "rope_parameters", "[1]");
}

TEST(HfConfigTest, RopeParametersPerLayerType) {
  Json j = Llama7B();
  j["num_hidden_layers"] = 2;
  j["layer_types"] = {"full_attention", "full_attention"};
  const Json linear = {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 1e6}};
  // Only the layer types in use count: the sliding entry is ignored.
  j["rope_parameters"] = {{"full_attention", linear},
                          {"sliding_attention", {{"rope_type", "yarn"}, {"factor", 4.0}}}};
  KVCC_ASSERT_OK_AND_ASSIGN(c, Parse(j));
  EXPECT_EQ(c.rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  // Layers of both types with different rope: one rope for all layers is all kvcc has.
  j["layer_types"] = {"full_attention", "sliding_attention"};
  j["sliding_window"] = 1 << 20;  // no shorter than the context: full attention
  ExpectError(j, "rope_parameters.sliding_attention.rope_type", "\"yarn\"");
  j["rope_parameters"]["sliding_attention"] = {{"rope_type", "linear"}, {"factor", 4.0}};
  ExpectError(j, "rope_parameters.sliding_attention", "per-layer rotary embeddings");
  j["rope_parameters"]["sliding_attention"] = linear;
  KVCC_ASSERT_OK(Parse(j).status());
  j["rope_parameters"].erase("sliding_attention");
  ExpectError(j, "rope_parameters.sliding_attention", "missing");
  j["rope_parameters"]["sliding_attention"] = nullptr;
  ExpectError(j, "rope_parameters.sliding_attention", "null");
  j["layer_types"] = {"full_attention", "chunked_attention"};
  ExpectError(j, "layer_types", "chunked_attention");
  j["layer_types"] = {"full_attention"};
  ExpectError(j, "layer_types", "a list of 2 layer types");
}

TEST(HfConfigTest, SlidingWindowShorterThanTheContextOnSomeLayersIsRefused) {
  Json j = Llama7B();
  j["num_hidden_layers"] = 2;
  j["layer_types"] = {"full_attention", "sliding_attention"};
  j["sliding_window"] = 1024;
  ExpectError(j, "layer_types", "1 of 2 layers would slide");
  j.erase("sliding_window");
  ExpectError(j, "layer_types", "sliding_window is not given");
  // Qwen2 in transformers 5: its layer_types say which layers slide.
  Json q = Json::parse(R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 896,
    "intermediate_size": 4864, "num_attention_heads": 14, "num_hidden_layers": 2,
    "num_key_value_heads": 2, "use_sliding_window": true, "sliding_window": 4096,
    "max_window_layers": 1, "layer_types": ["full_attention", "sliding_attention"],
    "vocab_size": 151936})");
  ExpectError(q, "use_sliding_window", "1 of 2 layers would slide");
  q["layer_types"] = {"sliding_attention", "sliding_attention"};
  KVCC_ASSERT_OK_AND_ASSIGN(all, Parse(q));
  EXPECT_EQ(all.max_position, 4096);
}

TEST(HfConfigTest, UnimplementedRopeTypesAreRefusedInBothLayouts) {
  // Qwen2.5's published long-context setting.
  const Json yarn = {{"factor", 4.0}, {"original_max_position_embeddings", 32768},
                     {"type", "yarn"}};
  Json j = Llama7B();
  j["rope_scaling"] = yarn;
  ExpectError(j, "rope_scaling.type", "\"yarn\"");
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"rope_theta", 1e6},
                          {"beta_fast", 32.0}, {"beta_slow", 1.0},
                          {"original_max_position_embeddings", 32768}};
  ExpectError(j, "rope_parameters.rope_type", "does not implement this rope type");
  for (const char* type : {"longrope", "proportional", "mrope"}) {
    j["rope_parameters"] = {{"rope_type", type}, {"factor", 2.0}};
    ExpectError(j, "rope_parameters.rope_type", type);
  }
}

TEST(HfConfigTest, PartialRotaryFactorOtherThanOneIsRefused) {
  Json j = Llama7B();
  j["partial_rotary_factor"] = 1.0;
  KVCC_ASSERT_OK(Parse(j).status());
  j["partial_rotary_factor"] = 0.5;
  ExpectError(j, "partial_rotary_factor", "partial rotary embeddings are not supported");
  j.erase("partial_rotary_factor");
  j["rope_parameters"] = {{"rope_type", "default"}, {"partial_rotary_factor", 0.25}};
  ExpectError(j, "rope_parameters.partial_rotary_factor", "0.25");
}

TEST(HfConfigTest, KeysThatChangeTheMathAreRefused) {
  struct Case {
    const char* key;
    Json value;
    const char* why;
  };
  const std::vector<Case> cases = {
      {"final_logit_softcapping", 30.0, "logit soft-capping"},
      {"attn_logit_softcapping", 50.0, "soft-capping"},
      {"num_local_experts", 8, "mixture-of-experts"},
      {"num_experts", 64, "mixture-of-experts"},
      {"num_experts_per_tok", 2, "mixture-of-experts"},
      {"n_routed_experts", 160, "mixture-of-experts"},
      {"moe_intermediate_size", 1408, "mixture-of-experts"},
      {"use_qk_norm", true, "QK norms"},
      {"qk_layernorm", true, "QK norms"},
      {"attention_sink", true, "attention sinks"},
      {"attention_multiplier", 0.015625, "attention multiplier"},
      {"embedding_multiplier", 12.0, "embedding multiplier"},
      {"residual_multiplier", 0.22, "residual multiplier"},
      {"logits_scaling", 8.0, "logit scaling"},
      {"sliding_window_pattern", 6, "sliding-window"},
      {"mlp_bias", true, "MLP biases"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.key);
    Json j = Llama7B();
    j[c.key] = c.value;
    ExpectError(j, c.key, c.why);
  }
  // Their neutral values change nothing.
  Json j = Llama7B();
  j["final_logit_softcapping"] = nullptr;
  j["num_experts"] = 0;
  j["use_qk_norm"] = false;
  j["attention_multiplier"] = 1.0;
  j["pretraining_tp"] = 2;  // transformers 4 only re-slices the same sums
  KVCC_ASSERT_OK_AND_ASSIGN(c, Parse(j));
  EXPECT_TRUE(c.warnings.empty()) << c.warnings.front();
}

TEST(HfConfigTest, UnknownKeysAreWarnedAboutOnce) {
  Json j = Llama7B();
  j["use_fancy_norm"] = true;
  j["bias"] = true;  // InternLM's key means nothing to LlamaForCausalLM
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}, {"truncate", false}};
  KVCC_ASSERT_OK_AND_ASSIGN(c, Parse(j));
  ASSERT_EQ(c.warnings.size(), 3u);
  std::string all;
  for (const std::string& w : c.warnings) all += w + "\n";
  EXPECT_NE(all.find("/models/x/config.json: key 'bias' (true) is not understood"),
            std::string::npos) << all;
  EXPECT_NE(all.find("key 'use_fancy_norm'"), std::string::npos) << all;
  EXPECT_NE(all.find("key 'rope_scaling.truncate'"), std::string::npos) << all;
  // Known harmless keys give none.
  Json k = Llama7B();
  for (const char* key : {"_name_or_path", "transformers_version", "use_cache", "pad_token_id",
                          "initializer_range", "attention_dropout"}) {
    k[key] = 0;
  }
  k["auto_map"] = {{"AutoConfig", "x.Config"}};
  KVCC_ASSERT_OK_AND_ASSIGN(h, Parse(k));
  EXPECT_TRUE(h.warnings.empty()) << h.warnings.front();
}

TEST(HfConfigTest, DeeplyNestedJsonIsRefusedWithoutRecursion) {
  // 100k levels: a recursive parser or printer would overflow the stack.
  std::string deep = R"({"architectures": ["LlamaForCausalLM"], "x": )";
  deep += std::string(100000, '[') + std::string(100000, ']') + "}";
  auto c = ParseHfConfig(deep, "/models/x/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(std::string(c.status().message()).find("/models/x/config.json"), std::string::npos);
  std::string objects;
  for (int i = 0; i < 100000; ++i) objects += "{\"a\":";
  objects += "1" + std::string(100000, '}');
  EXPECT_FALSE(ParseHfConfig(objects, "/models/x/config.json").ok());
}

TEST(HfConfigTest, EosIdListsKeepEveryId) {
  Json j = Llama7B();
  j["eos_token_id"] = Json::array({2, 7, 2});
  KVCC_ASSERT_OK_AND_ASSIGN(c, Parse(j));
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{2, 7}));
  // The artifact's metadata round-trips the list.
  KVCC_ASSERT_OK_AND_ASSIGN(back, ir::ModelConfig::FromJson(c.ToJson()));
  EXPECT_EQ(back.eos_token_ids, c.eos_token_ids);
  j["eos_token_id"] = Json::array({2, 32000});
  ExpectError(j, "eos_token_id", "[2,32000]");
  j["eos_token_id"] = Json::array({2, -1});
  ExpectError(j, "eos_token_id", "[2,-1]");
}

}  // namespace
}  // namespace kvcc::frontend
