// NFC / NFD against Python's unicodedata.normalize on random strings of base letters,
// combining marks of several classes (in every order), Hangul jamo and syllables, singletons
// and composition exclusions, plus the tokenizer corpus.
#include "tokenizer/unicode_nfc.h"

#include <random>

#include "tokenizer/utf8.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "tests/tokenizer_oracle.h"

namespace kvcc::tokenizer {
namespace {

TEST(UnicodeNfcTest, MatchesUnicodedata) {
  if (kvcc::testing::OraclePython() == nullptr) GTEST_SKIP() << "KVCC_PYTHON not set";
  const std::u32string pool = {
      U'a', U'A', U'e', U'o', U'u', U'c', U'q', U'd', U's', U' ', U'\u00c5', U'\u00e9', U'\u212b',
      U'\u2126', U'\u0300', U'\u0301', U'\u0302', U'\u0307', U'\u0308', U'\u030a', U'\u0323',
      U'\u0327', U'\u0328', U'\u0345', U'\u0344', U'\u0958', U'\u093c', U'\u0915', U'\u1100',
      U'\u1161', U'\u11a8', U'\uac00', U'\uac01', U'\u1e0b', U'\u1e9b', U'\u0f73', U'\u05b4',
      U'\u05d9', U'\u3099', U'\u304b', U'\U0001D15E', U'\U0001D165', U'\u4e2d', U'\U0001F642'};
  std::mt19937 rng(8);
  std::uniform_int_distribution<size_t> pick(0, pool.size() - 1);
  std::uniform_int_distribution<int> len(1, 12);
  std::vector<std::string> texts = kvcc::testing::TokenizerCorpus();
  for (int i = 0; i < 3000; ++i) {
    std::string s;
    for (int k = len(rng); k > 0; --k) AppendUtf8(pool[pick(rng)], &s);
    texts.push_back(s);
  }
  auto oracle = kvcc::testing::RunTokenizerOracle({{"normalize_texts", texts}},
                                                  kvcc::testing::TempDir("oracle"));
  ASSERT_TRUE(oracle.ok()) << oracle.status();
  int wrong = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string nfc = (*oracle)["nfc"][i].get<std::string>();
    const std::string nfd = (*oracle)["nfd"][i].get<std::string>();
    if ((ToNfc(texts[i]) != nfc || ToNfd(texts[i]) != nfd) && ++wrong <= 5) {
      ADD_FAILURE() << "text \"" << texts[i] << "\": NFC \"" << ToNfc(texts[i]) << "\" want \"" << nfc
                    << "\", NFD \"" << ToNfd(texts[i]) << "\" want \"" << nfd << "\"";
    }
  }
  EXPECT_EQ(wrong, 0);
}

TEST(UnicodeNfcTest, KnownForms) {
  EXPECT_EQ(ToNfc("e\u0301"), "\u00e9");
  EXPECT_EQ(ToNfd("\u00e9"), "e\u0301");
  EXPECT_EQ(ToNfc("\u212b"), "\u00c5");  // singleton decomposition, never recomposed to U+212B
  EXPECT_EQ(ToNfc("\u1100\u1161\u11a8"), "\uac01");  // Hangul L V T
  EXPECT_EQ(ToNfc("plain ascii"), "plain ascii");
  EXPECT_EQ(ToNfc(""), "");
}

}  // namespace
}  // namespace kvcc::tokenizer
