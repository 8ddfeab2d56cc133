// The letter / number / whitespace classes against Python's unicodedata for every code point
// (the tables were generated from it; this checks the lookup and that the tables are intact),
// and the characters the tokenizer corpus relies on.
#include "tokenizer/unicode_category.h"

#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "tests/tokenizer_oracle.h"

namespace kvcc::tokenizer {
namespace {

TEST(UnicodeCategoryTest, MatchesUnicodedataForEveryCodePoint) {
  if (kvcc::testing::OraclePython() == nullptr) GTEST_SKIP() << "KVCC_PYTHON not set";
  auto oracle = kvcc::testing::RunTokenizerOracle({{"unicode_classes", true}},
                                                  kvcc::testing::TempDir("oracle"));
  ASSERT_TRUE(oracle.ok()) << oracle.status();
  const std::pair<const char*, bool (*)(char32_t)> classes[] = {
      {"letter", &IsUnicodeLetter}, {"number", &IsUnicodeNumber}, {"space", &IsUnicodeWhitespace}};
  for (const auto& [name, fn] : classes) {
    std::vector<bool> want(0x110000, false);
    for (const auto& r : (*oracle)["unicode"][name]) {
      for (uint32_t cp = r[0].get<uint32_t>(); cp <= r[1].get<uint32_t>(); ++cp) want[cp] = true;
    }
    int wrong = 0;
    for (char32_t cp = 0; cp < 0x110000; ++cp) {
      if (fn(cp) != want[cp] && ++wrong <= 5) ADD_FAILURE() << name << " U+" << std::hex << static_cast<uint32_t>(cp);
    }
    EXPECT_EQ(wrong, 0) << name;
  }
}

TEST(UnicodeCategoryTest, CorpusCharacters) {
  EXPECT_TRUE(IsUnicodeLetter(U'\u00e9'));      // accented latin
  EXPECT_TRUE(IsUnicodeLetter(U'\u4e2d'));      // CJK
  EXPECT_TRUE(IsUnicodeLetter(U'\uac00'));      // Hangul
  EXPECT_FALSE(IsUnicodeLetter(U'\U0001F642'));  // emoji: "other"
  EXPECT_FALSE(IsUnicodeNumber(U'\U0001F642'));
  EXPECT_FALSE(IsUnicodeWhitespace(U'\U0001F642'));
  EXPECT_FALSE(IsUnicodeLetter(U'\u0301'));     // combining mark: "other"
  EXPECT_TRUE(IsUnicodeNumber(U'\u0663'));      // Arabic-Indic three
  EXPECT_TRUE(IsUnicodeNumber(U'\u00bd'));      // vulgar fraction
  EXPECT_TRUE(IsUnicodeWhitespace(U'\u3000'));
  EXPECT_FALSE(IsUnicodeWhitespace(U'\u200b'));  // zero width space is not White_Space
}

}  // namespace
}  // namespace kvcc::tokenizer
