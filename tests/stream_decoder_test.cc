// StreamDecoder: fed one id at a time over every tokenizer we load (byte-level, byte-fallback,
// Metaspace and SentencePiece), the concatenated output equals Tokenizer::Decode of all ids, on
// random id sequences (which break UTF-8 and byte runs at will) and on encoded real text; and
// partial characters are held back rather than emitted as replacement characters.
#include "tokenizer/stream_decoder.h"

#include <memory>

#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/sentencepiece_tokenizer.h"
#include "tokenizer/utf8.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "tests/tokenizer_oracle.h"

namespace kvcc::tokenizer {
namespace {

absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& rel) {
  if (rel.size() > 6 && rel.substr(rel.size() - 6) == ".model") {
    auto t = SentencePieceTokenizer::FromFile(kvcc::testing::SourcePath(rel));
    if (!t.ok()) return t.status();
    return std::unique_ptr<Tokenizer>(std::move(*t));
  }
  auto t = HfTokenizer::FromFile(kvcc::testing::SourcePath(rel));
  if (!t.ok()) return t.status();
  return std::unique_ptr<Tokenizer>(std::move(*t));
}

// Streams ids through a decoder; also checks nothing emitted ends inside a character.
std::string Stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special) {
  StreamDecoder dec(&tok, skip_special);
  std::string out;
  for (int32_t id : ids) {
    auto piece = dec.Put(id);
    EXPECT_TRUE(piece.ok()) << piece.status();
    if (!piece.ok()) return out;
    EXPECT_TRUE(IsValidUtf8(*piece));
    out += *piece;
  }
  return out + dec.Finish();
}

class StreamDecoderTest : public ::testing::TestWithParam<std::string> {};

TEST_P(StreamDecoderTest, StreamingEqualsFullDecode) {
  KVCC_ASSERT_OK_AND_ASSIGN(tok, Load(GetParam()));
  auto lists = kvcc::testing::RandomIdLists(tok->vocab_size(), 300, 24, 2024);
  // Byte-fallback pieces, where they exist, in long runs.
  const std::vector<int32_t> bytes = kvcc::testing::ByteFallbackIds(*tok);
  if (!bytes.empty()) {
    auto runs = kvcc::testing::RandomIdLists(static_cast<int32_t>(bytes.size()), 200, 10, 5);
    auto words = kvcc::testing::RandomIdLists(tok->vocab_size(), 200, 3, 6);
    for (size_t i = 0; i < runs.size(); ++i) {
      std::vector<int32_t> mixed = words[i];
      for (int32_t x : runs[i]) mixed.push_back(bytes[x]);
      mixed.insert(mixed.end(), words[(i + 1) % words.size()].begin(), words[(i + 1) % words.size()].end());
      lists.push_back(mixed);
    }
  }
  for (const std::string& text : kvcc::testing::TokenizerCorpus()) {
    KVCC_ASSERT_OK_AND_ASSIGN(ids, tok->Encode(text));
    lists.push_back(ids);
  }
  for (const auto& ids : lists) {
    SCOPED_TRACE(::testing::PrintToString(ids));
    for (bool skip : {false, true}) {
      KVCC_ASSERT_OK_AND_ASSIGN(full, tok->Decode(ids, skip));
      EXPECT_EQ(Stream(*tok, ids, skip), full) << "skip_special_tokens=" << skip;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Tokenizers, StreamDecoderTest,
    ::testing::Values("tests/data/tokenizers/gpt2_bytelevel.json",
                      "tests/data/tokenizers/llama3_bytelevel.json",
                      "tests/data/tokenizers/llama2_spm_bpe.json",
                      "tests/data/tokenizers/metaspace_bpe.json",
                      "../shared/models/stories260K/tokenizer.json",
                      "../shared/models/stories260K/tokenizer.model"),
    [](const ::testing::TestParamInfo<std::string>& info) {
      std::string name = info.param.substr(info.param.rfind('/', info.param.rfind('/') - 1) + 1);
      for (char& c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      }
      return name;
    });

TEST(StreamDecoderTest, HoldsPartialCharactersAndAppliesLeadingSpaceRuleOnce) {
  for (const char* rel : {"../shared/models/stories260K/tokenizer.json",
                          "../shared/models/stories260K/tokenizer.model"}) {
    SCOPED_TRACE(rel);
    KVCC_ASSERT_OK_AND_ASSIGN(tok, Load(rel));
    // "中" is not in the 512-piece vocabulary: it becomes three byte-fallback pieces.
    KVCC_ASSERT_OK_AND_ASSIGN(ids, tok->Encode("Hi \xE4\xB8\xAD!", {false, true}));
    StreamDecoder dec(tok.get());
    std::vector<std::string> outs;
    for (int32_t id : ids) outs.push_back(*dec.Put(id));
    outs.push_back(dec.Finish());
    std::string all;
    for (const auto& o : outs) {
      EXPECT_EQ(o.find("\xEF\xBF\xBD"), std::string::npos);  // never a replacement character
      all += o;
    }
    EXPECT_EQ(all, "Hi \xE4\xB8\xAD!");
    EXPECT_EQ(outs.front().substr(0, 1), "H");  // the dummy-prefix space is dropped at the start
    // After a reset the next text starts fresh: its leading space is dropped again.
    dec.Reset();
    KVCC_ASSERT_OK_AND_ASSIGN(again, tok->Encode("Hi", {false, true}));
    std::string second;
    for (int32_t id : again) second += *dec.Put(id);
    second += dec.Finish();
    EXPECT_EQ(second, "Hi");
    EXPECT_FALSE(dec.Put(tok->vocab_size()).ok());
  }
}

TEST(StreamDecoderTest, ByteLevelEmojiIsHeldUntilComplete) {
  KVCC_ASSERT_OK_AND_ASSIGN(tok, Load("tests/data/tokenizers/gpt2_bytelevel.json"));
  const std::string emoji = "\xF0\x9F\x9A\x80";  // U+1F680, not a merged token in this vocab
  KVCC_ASSERT_OK_AND_ASSIGN(ids, tok->Encode(emoji));
  ASSERT_GT(ids.size(), 1u);
  StreamDecoder dec(tok.get());
  for (size_t i = 0; i + 1 < ids.size(); ++i) EXPECT_EQ(*dec.Put(ids[i]), "");
  EXPECT_EQ(dec.pending_tokens(), ids.size() - 1);
  EXPECT_EQ(*dec.Put(ids.back()), emoji);
  // A cut-off character at the end still comes out as Decode would write it.
  EXPECT_EQ(*dec.Put(ids[0]), "");
  EXPECT_EQ(dec.Finish(), "\xEF\xBF\xBD");
}

}  // namespace
}  // namespace kvcc::tokenizer
