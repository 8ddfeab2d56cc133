// generation_config.json: parsing and its bad input, the stop tokens OpenModel assembles from it
// and config.json, and `kvcc generate` applying its sampling defaults only when no sampling flag
// is given (the built binary; skipped when it is not built).
#include "frontend/generation_config.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "gtest/gtest.h"
#include "pipeline/model_opener.h"
#include "tests/test_util.h"

namespace kvcc::frontend {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

constexpr char kFile[] = "/models/x/generation_config.json";

// Llama-3.1-8B-Instruct's generation_config.json as published.
constexpr char kLlama31[] = R"({
  "bos_token_id": 128000, "do_sample": true, "eos_token_id": [128001, 128008, 128009],
  "temperature": 0.6, "top_p": 0.9, "transformers_version": "4.42.3"})";

TEST(GenerationConfigTest, Llama31Instruct) {
  KVCC_ASSERT_OK_AND_ASSIGN(g, ParseGenerationConfig(kLlama31, kFile, 128256));
  EXPECT_EQ(g.file, kFile);
  EXPECT_EQ(g.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(g.do_sample, true);
  EXPECT_EQ(g.temperature, 0.6);
  EXPECT_EQ(g.top_p, 0.9);
  EXPECT_FALSE(g.top_k.has_value());
  EXPECT_FALSE(g.repetition_penalty.has_value());
}

TEST(GenerationConfigTest, EmptyAndSingleEos) {
  KVCC_ASSERT_OK_AND_ASSIGN(empty, ParseGenerationConfig("{}", kFile, 10));
  EXPECT_TRUE(empty.eos_token_ids.empty());
  EXPECT_FALSE(empty.do_sample.has_value());
  KVCC_ASSERT_OK_AND_ASSIGN(one, ParseGenerationConfig(
                                     R"({"eos_token_id": 2, "top_k": 20, "repetition_penalty": 1.05})",
                                     kFile, 10));
  EXPECT_EQ(one.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_EQ(one.top_k, 20);
  EXPECT_EQ(one.repetition_penalty, 1.05);
}

TEST(GenerationConfigTest, BadValuesNameTheKey) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"eos_token_id": 10})", "'eos_token_id' is 10"},
      {R"({"eos_token_id": ["2"]})", "'eos_token_id' is [\"2\"]"},
      {R"({"do_sample": "yes"})", "'do_sample' is \"yes\""},
      {R"({"temperature": -1})", "'temperature' is -1"},
      {R"({"top_k": 1.5})", "'top_k' is 1.5"},
      {R"({"top_p": 0})", "'top_p' is 0"},
      {R"({"top_p": 1.5})", "'top_p' is 1.5"},
      {R"({"repetition_penalty": 0})", "'repetition_penalty' is 0"},
      {"[]", "expected a JSON object"},
      {"{", kFile},
      {std::string(100000, '['), kFile},
  };
  for (const auto& [text, want] : cases) {
    auto g = ParseGenerationConfig(text, kFile, 10);
    ASSERT_FALSE(g.ok()) << text.substr(0, 40);
    const std::string msg(g.status().message());
    EXPECT_NE(msg.find(kFile), std::string::npos) << msg;
    EXPECT_NE(msg.find(want), std::string::npos) << msg;
  }
}

// A copy of stories260K whose generation_config.json is `generation`.
std::string ModelWith(const std::string& dir, const Json& generation) {
  const fs::path src = testing::SourcePath("models/stories260K");
  for (const auto& e : fs::directory_iterator(src)) {
    fs::copy_file(e.path(), fs::path(dir) / e.path().filename(),
                  fs::copy_options::overwrite_existing);
  }
  std::ofstream(fs::path(dir) / kGenerationConfigFileName) << generation.dump();
  return dir;
}

TEST(GenerationConfigTest, LoadsBesideTheModelOrNothing) {
  const std::string dir = testing::TempDir("load");
  KVCC_ASSERT_OK_AND_ASSIGN(none, LoadGenerationConfig(dir, 512));
  EXPECT_FALSE(none.has_value());
  ModelWith(dir, {{"eos_token_id", {2, 5}}});
  KVCC_ASSERT_OK_AND_ASSIGN(from_dir, LoadGenerationConfig(dir, 512));
  ASSERT_TRUE(from_dir.has_value());
  EXPECT_EQ(from_dir->eos_token_ids, (std::vector<int64_t>{2, 5}));
  KVCC_ASSERT_OK_AND_ASSIGN(from_file, LoadGenerationConfig(dir + "/config.json", 512));
  ASSERT_TRUE(from_file.has_value());
  EXPECT_EQ(from_file->file, dir + "/generation_config.json");
  ModelWith(dir, {{"eos_token_id", 512}});
  EXPECT_FALSE(LoadGenerationConfig(dir, 512).ok());
}

TEST(GenerationConfigTest, OpenModelStopsAtEveryEosId) {
  const std::string dir = ModelWith(testing::TempDir("stop"), {{"eos_token_id", {7, 2, 9}}});
  pipeline::OpenOptions options;
  options.model_path = dir;
  options.engine.max_len = 64;
  KVCC_ASSERT_OK_AND_ASSIGN(opened, pipeline::OpenModel(options));
  // The tokenizer's </s> (2), then config.json's (2), then generation_config.json's.
  EXPECT_EQ(opened.stop_tokens, (std::vector<int32_t>{2, 7, 9}));
  // The artifact keeps generation_config.json, so it stops at the same tokens.
  ModelWith(dir, {{"eos_token_id", 600}});
  EXPECT_FALSE(pipeline::OpenModel(options).ok());  // outside the 512-token vocabulary
}

// ---- `kvcc generate` with the model's sampling defaults ----

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class GenerateDefaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kvcc_ = std::string(KVCC_BINARY_DIR) + "/tools/kvcc";
    if (!fs::exists(kvcc_)) GTEST_SKIP() << "kvcc binary not built at " << kvcc_;
    dir_ = testing::TempDir("cli");
  }
  // stdout of `kvcc generate MODEL --prompt ... <flags>`, which must succeed.
  std::string Generate(const std::string& model, const std::string& flags) {
    const std::string out = dir_ + "/out", err = dir_ + "/err";
    const std::string cmd = kvcc_ + " generate " + model +
                            " --prompt \"Once upon a time\" --max-new-tokens 40 --device cpu " +
                            flags + " > " + out + " 2> " + err;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd << "\n" << Slurp(err);
    return Slurp(out);
  }
  std::string kvcc_, dir_;
};

TEST_F(GenerateDefaultsTest, AppliedOnlyWithoutSamplingFlags) {
  const std::string greedy_model = ModelWith(testing::TempDir("greedy"), {{"eos_token_id", 2}});
  const std::string greedy = Generate(greedy_model, "");
  // do_sample true: transformers samples with temperature 1.5, top_k 50 (its default), top_p 1.
  const std::string sampling_model = ModelWith(
      testing::TempDir("sampling"), {{"do_sample", true}, {"temperature", 1.5}, {"eos_token_id", 2}});
  const std::string sampled = Generate(sampling_model, "--seed 3");
  EXPECT_EQ(sampled, Generate(greedy_model, "--seed 3 --temperature 1.5 --top-k 50 --top-p 1"));
  EXPECT_NE(sampled, greedy);
  // Any sampling flag: the flags alone (their defaults for the rest).
  EXPECT_EQ(Generate(sampling_model, "--seed 3 --temperature 0"), greedy);
  EXPECT_EQ(Generate(sampling_model, "--seed 3 --top-p 1"), greedy);
  // do_sample false (or absent) stays greedy whatever the temperature says.
  const std::string not_sampling = ModelWith(
      testing::TempDir("not_sampling"), {{"do_sample", false}, {"temperature", 1.5}});
  EXPECT_EQ(Generate(not_sampling, "--seed 3"), greedy);
}

}  // namespace
}  // namespace kvcc::frontend
