// config.json parsing per architecture, rope scaling variants, and every refused input.
#include "frontend/hf_config.h"

#include <fstream>

#include <nlohmann/json.hpp>

#include "gtest/gtest.h"
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

}  // namespace
}  // namespace kvcc::frontend
