// Tests for pipeline/model_opener: a model opens with its tokenizer, and a tokenizer whose ids
// exceed the model's vocabulary is refused at open, naming the tokenizer file and vocab_size.
#include "pipeline/model_opener.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace kvcc::pipeline {
namespace {

namespace fs = std::filesystem;

// stories260K (vocab_size 512) with its tokenizer.json edited by `edit`.
std::string Stories260KWithTokenizer(const std::string& name,
                                     void (*edit)(nlohmann::json& tokenizer)) {
  const fs::path src = testing::SourcePath("models/stories260K");
  const std::string dir = testing::TempDir(name);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer_config.json"}) {
    fs::copy_file(src / f, fs::path(dir) / f, fs::copy_options::overwrite_existing);
  }
  std::ifstream in(src / "tokenizer.json");
  nlohmann::json tok = nlohmann::json::parse(in);
  edit(tok);
  std::ofstream(fs::path(dir) / "tokenizer.json") << tok.dump();
  return dir;
}

OpenOptions Options(const std::string& dir) {
  OpenOptions o;
  o.model_path = dir;
  o.engine.max_len = 64;
  return o;
}

TEST(ModelOpenerTest, OpensAModelWithAFittingTokenizer) {
  const std::string dir = Stories260KWithTokenizer("fits", [](nlohmann::json&) {});
  KVCC_ASSERT_OK_AND_ASSIGN(opened, OpenModel(Options(dir)));
  ASSERT_TRUE(opened.tokenizer.has_value());
  EXPECT_EQ(opened.tokenizer->tokenizer->vocab_size(), 512);
}

TEST(ModelOpenerTest, RefusesATokenizerWithIdsBeyondTheModelVocabulary) {
  const std::string dir = Stories260KWithTokenizer("too_big", [](nlohmann::json& tok) {
    tok["added_tokens"].push_back({{"id", 700}, {"content", "<|extra|>"}, {"special", true}});
  });
  auto opened = OpenModel(Options(dir));
  ASSERT_FALSE(opened.ok());
  const std::string msg(opened.status().message());
  for (const std::string& needle : {dir + "/tokenizer.json", std::string("ids up to 700"),
                                    std::string("vocab_size 512")}) {
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace kvcc::pipeline
