// UTF-8 helpers: lossy decoding against Python's bytes.decode("utf-8", "replace") (the same
// maximal-subpart rule as Rust's from_utf8_lossy) on random byte strings, encode/decode round
// trips over every scalar value, and detection of a character cut off at the end.
#include "tokenizer/utf8.h"

#include <random>

#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "tests/tokenizer_oracle.h"

namespace kvcc::tokenizer {
namespace {

std::string Hex(const std::string& s) {
  static const char* k = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += k[c >> 4];
    out += k[c & 15];
  }
  return out;
}

TEST(Utf8Test, LossyMatchesPython) {
  if (kvcc::testing::OraclePython() == nullptr) GTEST_SKIP() << "KVCC_PYTHON not set";
  // Bytes biased toward the interesting ranges: leads, continuations, invalid leads, ASCII.
  const std::vector<int> pool = {0x41, 0x20, 0x80, 0x8F, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0,
                                 0xE4, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF, 0xB8, 0xAD, 0x90};
  std::mt19937 rng(3);
  std::uniform_int_distribution<size_t> pick(0, pool.size() - 1);
  std::uniform_int_distribution<int> len(0, 10);
  std::vector<std::string> inputs = {"", "plain", "\xE4\xB8\xAD", "\xF0\x9F\x99\x82", "\xED\xA0\x80",
                                     "\xC0\xAF", "\xF4\x90\x80\x80", "\xE4\xB8"};
  for (int i = 0; i < 2000; ++i) {
    std::string s;
    for (int k = len(rng); k > 0; --k) s.push_back(static_cast<char>(pool[pick(rng)]));
    inputs.push_back(s);
  }
  std::vector<std::string> hex;
  for (const auto& s : inputs) hex.push_back(Hex(s));
  auto oracle = kvcc::testing::RunTokenizerOracle({{"lossy_hex", hex}}, kvcc::testing::TempDir("oracle"));
  ASSERT_TRUE(oracle.ok()) << oracle.status();
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string want = (*oracle)["lossy"][i].get<std::string>();
    EXPECT_EQ(Utf8Lossy(inputs[i]), want) << "bytes " << hex[i];
    EXPECT_EQ(IsValidUtf8(inputs[i]), want == inputs[i]) << "bytes " << hex[i];
  }
}

TEST(Utf8Test, RoundTripsEveryScalarValue) {
  for (char32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    const std::string s = EncodeUtf8(cp);
    ASSERT_EQ(Utf8SequenceLength(s, 0), s.size()) << std::hex << cp;
    size_t pos = 0;
    ASSERT_EQ(DecodeUtf8At(s, &pos), cp);
    ASSERT_EQ(pos, s.size());
  }
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));  // a surrogate
  EXPECT_EQ(ToCodePoints("a\xFF" "b"), (std::u32string{U'a', kReplacementChar, U'b'}));
}

TEST(Utf8Test, IncompleteTail) {
  EXPECT_EQ(Utf8IncompleteTailLength(""), 0u);
  EXPECT_EQ(Utf8IncompleteTailLength("abc"), 0u);
  EXPECT_EQ(Utf8IncompleteTailLength("a\xE4"), 1u);
  EXPECT_EQ(Utf8IncompleteTailLength("a\xE4\xB8"), 2u);
  EXPECT_EQ(Utf8IncompleteTailLength("a\xE4\xB8\xAD"), 0u);
  EXPECT_EQ(Utf8IncompleteTailLength("\xF0\x9F\x99"), 3u);
  EXPECT_EQ(Utf8IncompleteTailLength("\xFF"), 0u);   // can never complete
  EXPECT_EQ(Utf8IncompleteTailLength("\x80\x80"), 0u);  // stray continuations
}

}  // namespace
}  // namespace kvcc::tokenizer
