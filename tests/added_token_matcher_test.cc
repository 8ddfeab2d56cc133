// AddedTokenMatcher: leftmost-longest matching, the lstrip / rstrip / single_word flags and
// the filter that decides which tokens take part (Hugging Face AddedVocabulary semantics; the
// end-to-end comparison with `tokenizers` is in hf_tokenizer_test).
#include "tokenizer/added_token_matcher.h"

#include "gtest/gtest.h"

namespace kvcc::tokenizer {
namespace {

std::string Show(const std::vector<TextChunk>& chunks) {
  std::string out;
  for (const TextChunk& c : chunks) {
    out += c.token_id >= 0 ? "[" + std::to_string(c.token_id) + "]" : "(" + c.text + ")";
  }
  return out;
}

auto kAll = [](const AddedToken&) { return true; };

TEST(AddedTokenMatcherTest, LeftmostLongest) {
  AddedTokenMatcher m({{"<s>", 1}, {"<s><s>", 2}, {"</s>", 3}});
  EXPECT_EQ(Show(m.Split("a<s><s><s>b</s>", true, kAll)), "(a)[2][1](b)[3]");
  EXPECT_EQ(Show(m.Split("", true, kAll)), "");
  EXPECT_EQ(Show(m.Split("plain", true, kAll)), "(plain)");
  auto chunks = m.Split("<s>x", true, kAll);
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_TRUE(chunks[0].at_text_start);
  EXPECT_FALSE(chunks[1].at_text_start);
}

TEST(AddedTokenMatcherTest, StripFlagsAbsorbWhitespace) {
  AddedToken l{"<L>", 1};
  l.lstrip = true;
  AddedToken r{"<R>", 2};
  r.rstrip = true;
  AddedTokenMatcher m({l, r});
  EXPECT_EQ(Show(m.Split("a \t<L> b", true, kAll)), "(a)[1]( b)");
  EXPECT_EQ(Show(m.Split("a <R> \n b", true, kAll)), "(a )[2](b)");
  EXPECT_EQ(Show(m.Split("<R>  <L>", true, kAll)), "[2][1]");
}

TEST(AddedTokenMatcherTest, SingleWordAndFilter) {
  AddedToken w{"cat", 5};
  w.single_word = true;
  AddedToken s{"<x>", 6};
  s.special = true;
  AddedTokenMatcher m({w, s});
  EXPECT_EQ(Show(m.Split("a cat, concat cats", true, kAll)), "(a )[5](, concat cats)");
  auto non_special = [](const AddedToken& t) { return !t.special; };
  EXPECT_EQ(Show(m.Split("<x> cat", true, non_special)), "(<x> )[5]");
}

}  // namespace
}  // namespace kvcc::tokenizer
