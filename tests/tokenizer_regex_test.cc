// Tests for tokenizer/tokenizer_regex: Oniguruma-to-RE2 rewriting, refusal of what RE2 would
// read differently, and find_iter's treatment of empty matches.
#include "tokenizer/tokenizer_regex.h"

#include <chrono>
#include <string>

#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace kvcc::tokenizer {
namespace {

using Spans = std::vector<std::pair<size_t, size_t>>;

Spans Find(const std::string& pattern, const std::string& text) {
  auto re = TokenizerRegex::Compile(pattern, "t.json", "Split");
  EXPECT_TRUE(re.ok()) << re.status();
  if (!re.ok()) return {};
  return (*re)->FindAll(text);
}

TEST(TokenizerRegexTest, ShorthandClassesHaveUnicodeMeaning) {
  // U+3000 ideographic space, U+0085 NEL, U+00A0 no-break space: all \s in Oniguruma.
  EXPECT_EQ(Find("\\s+", "x\xE3\x80\x80y\xC2\x85z\xC2\xA0w"), (Spans{{1, 4}, {5, 7}, {8, 10}}));
  // \w: letters, marks, decimal digits (Arabic-Indic three), connector punctuation.
  EXPECT_EQ(Find("\\w+", "\xC3\xA9_1\xD9\xA3x-y"), (Spans{{0, 7}, {8, 9}}));
  EXPECT_EQ(Find("[\\s\\d]+", "a 1\xD9\xA3 b"), (Spans{{1, 6}}));
  EXPECT_EQ(Find("\\h+", "af0g"), (Spans{{0, 3}}));
  EXPECT_EQ(Find("[^\\s]+", "ab cd"), (Spans{{0, 2}, {3, 5}}));
}

TEST(TokenizerRegexTest, AnchorsAreLineAnchorsAndInlineMIsDotAll) {
  EXPECT_EQ(Find("^a", "a\na b\nab"), (Spans{{0, 1}, {2, 3}, {6, 7}}));
  EXPECT_EQ(Find("a$", "a\nba\nab a"), (Spans{{0, 1}, {3, 4}, {8, 9}}));
  EXPECT_EQ(Find("(?m)a.b", "a\nb"), (Spans{{0, 3}}));
  EXPECT_EQ(Find("a.b", "a\nb"), Spans{});
  EXPECT_EQ(Find("(?i:ab)", "xAbab"), (Spans{{1, 3}, {3, 5}}));
}

TEST(TokenizerRegexTest, EmptyMatchesFollowOnigurumaFindIter) {
  // As tokenizers' Split with "x*" on "abxxc": (0,0) (1,1) (2,4) (5,5).
  EXPECT_EQ(Find("x*", "abxxc"), (Spans{{0, 0}, {1, 1}, {2, 4}, {5, 5}}));
  EXPECT_EQ(Find("x*", ""), (Spans{{0, 0}}));
  // Stepping past an empty match moves by a whole UTF-8 character.
  EXPECT_EQ(Find("x*", "\xC3\xA9"), (Spans{{0, 0}, {2, 2}}));
}

TEST(TokenizerRegexTest, RefusesWhatRe2CannotRunWithThePatternNamed) {
  for (const char* p : {"(?=a)", "(?!a)", "(?<=a)b", "(?<!a)b", "(a)\\1", "a\\b", "[\\S]",
                        "[[:alpha:]]", "(?s).", "(?x)a", "(?>a)", "a*+", "a\\Z", "(", "\\"}) {
    SCOPED_TRACE(p);
    auto re = TokenizerRegex::Compile(p, "dir/tokenizer.json", "pre_tokenizer Split");
    ASSERT_FALSE(re.ok());
    const std::string msg(re.status().message());
    EXPECT_NE(msg.find("dir/tokenizer.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::string("\"") + p + "\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("RE2"), std::string::npos) << msg;
  }
}

TEST(TokenizerRegexTest, BacktrackingPatternsRunInLinearTime) {
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Find("(a|a)*b", std::string(40, 'a')), Spans{});
  EXPECT_EQ(Find("(a|aa)*c", std::string(100000, 'a')), Spans{});
  EXPECT_EQ(Find(" {2,}", "x" + std::string(1 << 20, ' ') + "y"), (Spans{{1, 1 + (1 << 20)}}));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

}  // namespace
}  // namespace kvcc::tokenizer
