// HfTokenizer (tokenizer.json) against the Hugging Face `tokenizers` library on every fixture in
// tests/data/tokenizers and on stories260K: ids with and without special tokens, with special
// parsing off, decode of the encodings and of random id sequences; and the load-time errors.
#include "frontend/hf_tokenizer.h"

#include <fstream>

#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "tests/tokenizer_oracle.h"

namespace kvcc::frontend {
namespace {

using kvcc::testing::SourcePath;
using nlohmann::json;

std::vector<int32_t> Ids(const json& j) { return j.get<std::vector<int32_t>>(); }

class HfTokenizerOracleTest : public ::testing::TestWithParam<std::string> {};

TEST_P(HfTokenizerOracleTest, MatchesHuggingFaceTokenizers) {
  if (kvcc::testing::OraclePython() == nullptr) GTEST_SKIP() << "KVCC_PYTHON not set";
  const std::string path = SourcePath(GetParam());
  KVCC_ASSERT_OK_AND_ASSIGN(tok, HfTokenizer::FromFile(path));
  const auto texts = kvcc::testing::TokenizerCorpus();
  auto id_lists = kvcc::testing::RandomIdLists(tok->vocab_size(), 200, 12, 1234);
  // Byte-fallback runs are where decoders differ: add runs of byte tokens on their own.
  std::vector<int32_t> bytes;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    if (auto id = tok->PieceToId(name)) bytes.push_back(*id);
  }
  if (!bytes.empty()) {
    auto runs = kvcc::testing::RandomIdLists(static_cast<int32_t>(bytes.size()), 100, 6, 99);
    for (auto& run : runs) {
      for (int32_t& x : run) x = bytes[x];
      id_lists.push_back(run);
    }
  }
  json request = {{"tokenizer_json", path}, {"texts", texts}, {"id_lists", id_lists}};
  KVCC_ASSERT_OK_AND_ASSIGN(oracle, kvcc::testing::RunTokenizerOracle(
                                        request, kvcc::testing::TempDir("oracle")));
  const json& hf = oracle["hf"];
  EXPECT_EQ(tok->vocab_size(), hf["vocab_size"].get<int32_t>());
  int mismatches = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "text #" << i << ": \"" << texts[i] << "\"");
    const json& e = hf["encode"][i];
    KVCC_ASSERT_OK_AND_ASSIGN(ids, tok->Encode(texts[i]));
    EXPECT_EQ(ids, Ids(e["ids"]));
    KVCC_ASSERT_OK_AND_ASSIGN(plain, tok->Encode(texts[i], {/*add_special_tokens=*/false, true}));
    EXPECT_EQ(plain, Ids(e["ids_no_special"]));
    KVCC_ASSERT_OK_AND_ASSIGN(unparsed, tok->Encode(texts[i], {true, /*parse_special=*/false}));
    EXPECT_EQ(unparsed, Ids(e["ids_unparsed"]));
    KVCC_ASSERT_OK_AND_ASSIGN(text, tok->Decode(ids));
    EXPECT_EQ(text, hf["roundtrip"][i].get<std::string>());
    mismatches += (ids != Ids(e["ids"]));
  }
  EXPECT_EQ(mismatches, 0);
  for (size_t i = 0; i < id_lists.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "id list #" << i << ": "
                                      << ::testing::PrintToString(id_lists[i]));
    KVCC_ASSERT_OK_AND_ASSIGN(text, tok->Decode(id_lists[i]));
    EXPECT_EQ(text, hf["decode"][i]["text"].get<std::string>());
    KVCC_ASSERT_OK_AND_ASSIGN(skipped, tok->Decode(id_lists[i], /*skip_special_tokens=*/true));
    EXPECT_EQ(skipped, hf["decode"][i]["text_skip_special"].get<std::string>());
  }
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, HfTokenizerOracleTest,
    ::testing::Values("tests/data/tokenizers/gpt2_bytelevel.json",
                      "tests/data/tokenizers/smollm_bytelevel.json",
                      "tests/data/tokenizers/llama3_bytelevel.json",
                      "tests/data/tokenizers/qwen2_bytelevel.json",
                      "tests/data/tokenizers/llama2_spm_bpe.json",
                      "tests/data/tokenizers/metaspace_bpe.json",
                      "../shared/models/stories260K/tokenizer.json"),
    [](const ::testing::TestParamInfo<std::string>& info) {
      std::string name = info.param.substr(info.param.rfind('/', info.param.rfind('/') - 1) + 1);
      for (char& c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      }
      return name;
    });

TEST(HfTokenizerTest, Stories260KKnownPieces) {
  KVCC_ASSERT_OK_AND_ASSIGN(
      tok, HfTokenizer::FromFile(kvcc::testing::SharedPath("models/stories260K/tokenizer.json")));
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->unk_id(), 0);
  EXPECT_TRUE(tok->IsSpecial(2));
  EXPECT_FALSE(tok->IsSpecial(300));
  EXPECT_EQ(*tok->IdToPiece(3), "<0x00>");
  EXPECT_EQ(tok->PieceToId("<s>"), std::optional<int32_t>(1));
  EXPECT_EQ(tok->PieceToId("no such piece"), std::nullopt);
  EXPECT_FALSE(tok->IdToPiece(512).ok());
  EXPECT_FALSE(tok->Decode({1, 512}).ok());
  EXPECT_FALSE(tok->Decode({-1}).ok());
  // The reference prompt ids of models/stories260K-reference/reference.json.
  std::ifstream in(kvcc::testing::SharedPath("models/stories260K-reference/reference.json"));
  const json ref = json::parse(in, nullptr, false);
  ASSERT_FALSE(ref.is_discarded());
  KVCC_ASSERT_OK_AND_ASSIGN(ids, tok->Encode(ref["prompt"].get<std::string>()));
  EXPECT_EQ(ids, Ids(ref["prompt_ids_with_bos"]));
}

absl::Status LoadError(const std::string& json_text) {
  return HfTokenizer::FromJson(json_text, "bad/tokenizer.json").status();
}

std::string MinimalBpe(const std::string& extra) {
  return R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]})" +
         extra + "}";
}

TEST(HfTokenizerTest, RejectsBadFilesWithTheFileAndComponentNamed) {
  auto missing = HfTokenizer::FromFile("/nonexistent/tokenizer.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/tokenizer.json"), std::string::npos);

  auto malformed = LoadError("{\"model\": {");
  EXPECT_EQ(malformed.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(malformed.message().find("bad/tokenizer.json"), std::string::npos);
  EXPECT_NE(malformed.message().find("malformed JSON"), std::string::npos);

  EXPECT_NE(LoadError("[1, 2]").message().find("no \"model\""), std::string::npos);
  EXPECT_NE(LoadError(R"({"model": {"type": "WordPiece", "vocab": {}}})").message().find("WordPiece"),
            std::string::npos);
  EXPECT_NE(LoadError(R"({"model": {"type": "Unigram", "vocab": []}})").message().find("Unigram"),
            std::string::npos);
  EXPECT_NE(LoadError(MinimalBpe(R"(, "normalizer": {"type": "NFKC"})")).message().find("NFKC"),
            std::string::npos);
  EXPECT_NE(LoadError(MinimalBpe(R"(, "pre_tokenizer": {"type": "BertPreTokenizer"})"))
                .message().find("BertPreTokenizer"), std::string::npos);
  EXPECT_NE(LoadError(MinimalBpe(R"(, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\p{Han}+"}, "behavior": "Isolated", "invert": false})"))
                .message().find("\\p{Han}+"), std::string::npos);
  EXPECT_NE(LoadError(MinimalBpe(R"(, "decoder": {"type": "WordPiece"})")).message().find("WordPiece"),
            std::string::npos);
  EXPECT_NE(LoadError(MinimalBpe(R"(, "post_processor": {"type": "BertProcessing"})"))
                .message().find("BertProcessing"), std::string::npos);
  // Structurally wrong values are errors, not exceptions.
  EXPECT_NE(LoadError(R"({"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}})").message().find("bad/tokenizer.json"),
            std::string::npos);
  EXPECT_NE(LoadError(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a c"]}})").message().find("not in the vocab"),
            std::string::npos);
  EXPECT_NE(LoadError(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["abc"]}})").message().find("abc"),
            std::string::npos);
  EXPECT_NE(LoadError(MinimalBpe(R"(, "added_tokens": [{"content": "x"}])")).message().find("bad/tokenizer.json"),
            std::string::npos);
  // A minimal valid one loads and merges.
  KVCC_ASSERT_OK_AND_ASSIGN(tok, HfTokenizer::FromJson(MinimalBpe(""), "ok.json"));
  KVCC_ASSERT_OK_AND_ASSIGN(ids, tok->Encode("abab"));
  EXPECT_EQ(ids, (std::vector<int32_t>{2, 2}));
}

}  // namespace
}  // namespace kvcc::frontend
