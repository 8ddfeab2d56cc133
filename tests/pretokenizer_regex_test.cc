// The hand-written GPT-2 / Llama-3 / Qwen2 pre-tokenizer matchers against the Hugging Face
// `tokenizers` Split pre-tokenizer running the real regexes (Oniguruma) on random strings
// built to hit every alternative: contractions in both cases, letters of several scripts,
// digit runs, punctuation, combining marks, emoji, and runs of every kind of whitespace.
#include "tokenizer/pretokenizer_regex.h"

#include <random>

#include "tokenizer/utf8.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "tests/tokenizer_oracle.h"

namespace kvcc::tokenizer {
namespace {

std::vector<std::string> Pieces(PretokenizerPattern p, const std::string& text) {
  const std::u32string cps = ToCodePoints(text);
  std::vector<std::string> out;
  for (auto [b, e] : FindPretokenMatches(p, cps)) {
    std::string s;
    for (size_t i = b; i < e; ++i) AppendUtf8(cps[i], &s);
    out.push_back(s);
  }
  return out;
}

std::vector<std::string> RandomTexts(int count, uint32_t seed) {
  const std::vector<std::string> atoms = {
      "a", "Z", "s", "t", "re", "ve", "m", "ll", "d", "S", "T", "RE", "LL", "D", "'", "'", "'",
      "0", "7", "12345", " ", " ", " ", "  ", "\t", "\n", "\n", "\r\n", "\r", ".", ",", "!?",
      "-", "_", "(", "}", "\"", "\u00e9", "\u00c5", "\u00df", "\u4e2d", "\u6587", "\u3002",
      "\u0663", "\u00bd", "\u2167", "\u0301", "\U0001F642", "\u200d", "\u00a0", "\u3000",
      "\u2003", "\u0394", "\u0436", "\u05d0", "\u0e01", "\U00020000", "\u2028", "\x0b",
  };
  std::mt19937 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, atoms.size() - 1);
  std::uniform_int_distribution<int> len(1, 24);
  std::vector<std::string> out;
  for (int i = 0; i < count; ++i) {
    std::string s;
    for (int k = len(rng); k > 0; --k) s += atoms[pick(rng)];
    out.push_back(s);
  }
  return out;
}

class PretokenizerRegexTest : public ::testing::TestWithParam<PretokenizerPattern> {};

TEST_P(PretokenizerRegexTest, MatchesOnigurumaOnRandomText) {
  if (kvcc::testing::OraclePython() == nullptr) GTEST_SKIP() << "KVCC_PYTHON not set";
  auto texts = RandomTexts(600, 11 + static_cast<int>(GetParam()));
  for (const std::string& t : kvcc::testing::TokenizerCorpus()) {
    if (!t.empty()) texts.push_back(t);
  }
  nlohmann::json request = {{"split_pattern", PretokenizerPatternSource(GetParam())},
                            {"split_texts", texts}};
  auto oracle = kvcc::testing::RunTokenizerOracle(request, kvcc::testing::TempDir("oracle"));
  ASSERT_TRUE(oracle.ok()) << oracle.status();
  int mismatches = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto expected = (*oracle)["split"][i].get<std::vector<std::string>>();
    const auto got = Pieces(GetParam(), texts[i]);
    if (got != expected && ++mismatches <= 5) {
      ADD_FAILURE() << "text \"" << texts[i] << "\"\n got " << ::testing::PrintToString(got)
                    << "\n want " << ::testing::PrintToString(expected);
    }
  }
  EXPECT_EQ(mismatches, 0);
}

INSTANTIATE_TEST_SUITE_P(Patterns, PretokenizerRegexTest,
                         ::testing::Values(PretokenizerPattern::kGpt2, PretokenizerPattern::kLlama3,
                                           PretokenizerPattern::kQwen2),
                         [](const ::testing::TestParamInfo<PretokenizerPattern>& info) {
                           switch (info.param) {
                             case PretokenizerPattern::kGpt2: return std::string("Gpt2");
                             case PretokenizerPattern::kLlama3: return std::string("Llama3");
                             case PretokenizerPattern::kQwen2: return std::string("Qwen2");
                           }
                           return std::string("Unknown");
                         });

TEST(PretokenizerRegexTest, RecognisesOnlyThePublishedPatterns) {
  for (PretokenizerPattern p : {PretokenizerPattern::kGpt2, PretokenizerPattern::kLlama3,
                                PretokenizerPattern::kQwen2}) {
    EXPECT_EQ(RecognizePretokenizerPattern(PretokenizerPatternSource(p)), p);
  }
  EXPECT_EQ(RecognizePretokenizerPattern("\\s+"), std::nullopt);
  EXPECT_EQ(RecognizePretokenizerPattern(""), std::nullopt);
  // The matches tile the text; the empty text has none.
  EXPECT_TRUE(FindPretokenMatches(PretokenizerPattern::kGpt2, U"").empty());
}

// Spelled-out cases of the patterns' documented behaviour (the whitespace look-ahead leaves
// one space to lead the next word; Llama-3 groups digits by three and keeps newlines apart).
TEST(PretokenizerRegexTest, DocumentedBehaviour) {
  EXPECT_EQ(Pieces(PretokenizerPattern::kGpt2, "Hello   world's 2024!"),
            (std::vector<std::string>{"Hello", "  ", " world", "'s", " 2024", "!"}));
  EXPECT_EQ(Pieces(PretokenizerPattern::kLlama3, "I'M 1234567 ok\n\n  go"),
            (std::vector<std::string>{"I", "'M", " ", "123", "456", "7", " ok", "\n\n", " ", " go"}));
  EXPECT_EQ(Pieces(PretokenizerPattern::kQwen2, "x 42"),
            (std::vector<std::string>{"x", " ", "4", "2"}));
}

}  // namespace
}  // namespace kvcc::tokenizer
