#include "testing/synth_tokenizer.h"

#include <string>

#include "frontend/hf_config.h"
#include "gtest/gtest.h"
#include "tokenizer/hf_tokenizer.h"

namespace kvcc::testing {
namespace {

ir::ModelConfig Config(int64_t vocab) {
  ir::ModelConfig c;
  c.vocab_size = vocab;
  c.bos_token_id = 1;
  c.eos_token_ids = {2, 7};
  return c;
}

TEST(SynthTokenizerTest, CoversTheVocabularyAndRoundTripsText) {
  auto json = SynthTokenizerJson(Config(1000));
  ASSERT_TRUE(json.ok()) << json.status();
  auto tok = tokenizer::HfTokenizer::FromJson(*json, "synth tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), 1000);
  EXPECT_TRUE((*tok)->IsSpecial(1));
  EXPECT_TRUE((*tok)->IsSpecial(2));
  EXPECT_TRUE((*tok)->IsSpecial(7));
  EXPECT_FALSE((*tok)->IsSpecial(500));
  const std::string text = "Hello, wörld!\n\t  x";
  auto ids = (*tok)->Encode(text, {.add_special_tokens = false, .parse_special = false});
  ASSERT_TRUE(ids.ok()) << ids.status();
  for (int32_t id : *ids) {
    EXPECT_GT(id, 2);
    EXPECT_LT(id, 3 + 257);  // bytes only: there are no merges
  }
  auto back = (*tok)->Decode(*ids);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, text);
  auto filler = (*tok)->Decode({999, 998});
  ASSERT_TRUE(filler.ok()) << filler.status();
  EXPECT_EQ(*filler, " t999 t998");
  auto special = (*tok)->Decode({1, 2, 999}, /*skip_special_tokens=*/true);
  ASSERT_TRUE(special.ok());
  EXPECT_EQ(*special, " t999");
}

TEST(SynthTokenizerTest, RefusesAVocabularyTooSmallForTheBytes) {
  auto json = SynthTokenizerJson(Config(200));
  ASSERT_FALSE(json.ok());
  EXPECT_NE(json.status().message().find("vocab_size is 200"), std::string::npos)
      << json.status();
}

}  // namespace
}  // namespace kvcc::testing
