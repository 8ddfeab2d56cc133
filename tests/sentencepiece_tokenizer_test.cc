// SentencePieceTokenizer (tokenizer.model through libsentencepiece) on stories260K: ids equal
// to Hugging Face `tokenizers` on the converted tokenizer.json (special tokens inline included)
// and to the `sentencepiece` Python library on plain text, decode equal to `sentencepiece`, the
// ptb.valid ids equal to our tokenizer.json implementation, and bad model files rejected.
#include "tokenizer/sentencepiece_tokenizer.h"

#include <sys/stat.h>

#include <fstream>

#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/unicode_category.h"
#include "tokenizer/utf8.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "tests/tokenizer_oracle.h"

namespace kvcc::tokenizer {
namespace {

using kvcc::testing::SharedPath;
using nlohmann::json;

std::vector<int32_t> Ids(const json& j) { return j.get<std::vector<int32_t>>(); }

// stories260K's tokenizer.json emulates remove_extra_whitespaces with a Strip normalizer, which
// strips every Unicode whitespace, while SentencePiece strips only ' '. The two files therefore
// agree exactly when no span between special tokens starts or ends with other whitespace.
bool FilesAgreeByDesign(const std::string& text) {
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.size();
    for (const char* special : {"<s>", "</s>", "<unk>"}) end = std::min(end, text.find(special, start));
    size_t b = start, e = end;  // ' ' is stripped by both
    while (b < e && text[b] == ' ') ++b;
    while (e > b && text[e - 1] == ' ') --e;
    if (e > b) {
      const std::u32string cps = ToCodePoints(absl::string_view(text).substr(b, e - b));
      if (IsUnicodeWhitespace(cps.front()) || IsUnicodeWhitespace(cps.back())) return false;
    }
    if (end == text.size()) break;
    start = text.find('>', end) + 1;
  }
  return true;
}

const std::string kModel = "models/stories260K/tokenizer.model";
const std::string kJson = "models/stories260K/tokenizer.json";

TEST(SentencePieceTokenizerTest, MatchesHuggingFaceAndSentencePieceLibraries) {
  if (kvcc::testing::OraclePython() == nullptr) GTEST_SKIP() << "KVCC_PYTHON not set";
  KVCC_ASSERT_OK_AND_ASSIGN(tok, SentencePieceTokenizer::FromFile(SharedPath(kModel)));
  const auto texts = kvcc::testing::TokenizerCorpus();
  auto id_lists = kvcc::testing::RandomIdLists(tok->vocab_size(), 200, 12, 4321);
  auto bytes = kvcc::testing::RandomIdLists(256, 100, 6, 77);  // byte pieces are ids 3..258
  for (auto& run : bytes) {
    for (int32_t& x : run) x += 3;
    id_lists.push_back(run);
  }
  json request = {{"tokenizer_json", SharedPath(kJson)},
                  {"sentencepiece_model", SharedPath(kModel)},
                  {"texts", texts},
                  {"id_lists", id_lists}};
  KVCC_ASSERT_OK_AND_ASSIGN(oracle, kvcc::testing::RunTokenizerOracle(
                                        request, kvcc::testing::TempDir("oracle")));
  int compared_with_hf = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "text #" << i << ": \"" << texts[i] << "\"");
    KVCC_ASSERT_OK_AND_ASSIGN(raw, tok->Encode(texts[i], {false, /*parse_special=*/false}));
    EXPECT_EQ(raw, Ids(oracle["sp"]["encode"][i]));
    if (!FilesAgreeByDesign(texts[i])) continue;
    ++compared_with_hf;
    KVCC_ASSERT_OK_AND_ASSIGN(ids, tok->Encode(texts[i]));
    EXPECT_EQ(ids, Ids(oracle["hf"]["encode"][i]["ids"]));
    KVCC_ASSERT_OK_AND_ASSIGN(plain, tok->Encode(texts[i], {false, true}));
    EXPECT_EQ(plain, Ids(oracle["hf"]["encode"][i]["ids_no_special"]));
  }
  EXPECT_GE(compared_with_hf, 26);
  for (size_t i = 0; i < id_lists.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "ids " << ::testing::PrintToString(id_lists[i]));
    KVCC_ASSERT_OK_AND_ASSIGN(text, tok->Decode(id_lists[i]));
    EXPECT_EQ(text, oracle["sp"]["decode"][i].get<std::string>());
  }
}

TEST(SentencePieceTokenizerTest, PtbValidIdsEqualTokenizerJson) {
  KVCC_ASSERT_OK_AND_ASSIGN(sp, SentencePieceTokenizer::FromFile(SharedPath(kModel)));
  KVCC_ASSERT_OK_AND_ASSIGN(hf, HfTokenizer::FromFile(SharedPath(kJson)));
  std::ifstream in(SharedPath("data/ptb/ptb.valid.txt"));
  ASSERT_TRUE(in.good());
  std::string line;
  int lines = 0, differing = 0;
  size_t tokens = 0;
  while (std::getline(in, line)) {
    ++lines;
    KVCC_ASSERT_OK_AND_ASSIGN(a, sp->Encode(line));
    KVCC_ASSERT_OK_AND_ASSIGN(b, hf->Encode(line));
    tokens += a.size();
    if (a != b && ++differing <= 3) ADD_FAILURE() << "line " << lines << ": \"" << line << "\"";
  }
  EXPECT_EQ(lines, 3370);
  EXPECT_EQ(differing, 0);
  EXPECT_GT(tokens, static_cast<size_t>(lines) * 10);  // real tokenization, not empty output
}

TEST(SentencePieceTokenizerTest, SpecialIdsAndFlags) {
  KVCC_ASSERT_OK_AND_ASSIGN(tok, SentencePieceTokenizer::FromFile(SharedPath(kModel)));
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->unk_id(), 0);
  EXPECT_TRUE(tok->IsSpecial(1));
  EXPECT_FALSE(tok->IsSpecial(0));  // unk is not a control piece
  EXPECT_EQ(*tok->IdToPiece(3), "<0x00>");
  EXPECT_EQ(tok->PieceToId("</s>"), std::optional<int32_t>(2));
  EXPECT_EQ(tok->PieceToId("no such piece"), std::nullopt);
  tok->set_add_bos(false);
  tok->set_add_eos(true);
  KVCC_ASSERT_OK_AND_ASSIGN(ids, tok->Encode("Hello"));
  ASSERT_FALSE(ids.empty());
  EXPECT_NE(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);
  KVCC_ASSERT_OK_AND_ASSIGN(text, tok->Decode(ids));
  EXPECT_EQ(text, "Hello");
  EXPECT_FALSE(tok->Decode({5, 512}).ok());
}

TEST(SentencePieceTokenizerTest, RejectsMissingAndMalformedModels) {
  auto missing = SentencePieceTokenizer::FromFile("/nonexistent/tokenizer.model");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/tokenizer.model"), std::string::npos);
  auto garbage = SentencePieceTokenizer::FromSerialized("this is not a protobuf \xff\xfe", "x/tokenizer.model");
  EXPECT_EQ(garbage.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(garbage.status().message().find("x/tokenizer.model"), std::string::npos);
  auto empty = SentencePieceTokenizer::FromSerialized("", "empty/tokenizer.model");
  EXPECT_FALSE(empty.ok());
  const std::string dir = kvcc::testing::TempDir("dir");
  auto is_dir = SentencePieceTokenizer::FromFile(dir);
  EXPECT_FALSE(is_dir.ok());
  EXPECT_NE(is_dir.status().message().find(dir), std::string::npos);
  EXPECT_NE(is_dir.status().message().find("is a directory"), std::string::npos);
  // A FIFO is refused through ir::ReadRegularFile without waiting for a writer.
  const std::string fifo = dir + "/tokenizer.model";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto from_fifo = SentencePieceTokenizer::FromFile(fifo);
  ASSERT_FALSE(from_fifo.ok());
  EXPECT_NE(from_fifo.status().message().find("is a FIFO"), std::string::npos) << from_fifo.status();
}

// Found by sentencepiece_fuzzer: a piece spelled with a NUL byte makes the library's trie builder
// throw instead of returning a status.
TEST(SentencePieceTokenizerTest, PieceWithNulByteIsAnErrorNotACrash) {
  const std::string model = kvcc::testing::ReadFileBytes(kvcc::testing::SourcePath(
      "fuzz/regressions/sentencepiece/sentencepiece-crash-a7e2b256fe1831866b60d7836e134edb376a2f16"));
  ASSERT_FALSE(model.empty());
  auto tok = SentencePieceTokenizer::FromSerialized(model, "nul/tokenizer.model");
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find("nul/tokenizer.model"), std::string::npos) << tok.status();
}

TEST(SentencePieceTokenizerTest, TruncatedOrFlippedModelsFailCleanly) {
  std::ifstream in(SharedPath(kModel), std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 1000u);
  int rejected = 0;
  for (size_t cut = 1; cut < bytes.size(); cut += 97) {
    std::string damaged = bytes.substr(0, cut);
    if (cut % 2 == 0) damaged = bytes, damaged[cut] = static_cast<char>(damaged[cut] ^ 0x5A);
    auto tok = SentencePieceTokenizer::FromSerialized(damaged, "damaged.model");
    if (!tok.ok()) {
      ++rejected;
      EXPECT_NE(tok.status().message().find("damaged.model"), std::string::npos);
      continue;
    }
    auto ids = (*tok)->Encode("Hello world \xE4\xB8\xAD");
    ASSERT_TRUE(ids.ok());
    EXPECT_TRUE((*tok)->Decode(*ids).ok());
  }
  EXPECT_GT(rejected, 0);
}

}  // namespace
}  // namespace kvcc::tokenizer
