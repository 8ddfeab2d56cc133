// HfTokenizer (tokenizer.json) against the Hugging Face `tokenizers` library on every fixture in
// tests/data/tokenizers and on stories260K: ids with and without special tokens, with special
// parsing off, decode of the encodings and of random id sequences; and the load-time errors.
#include "tokenizer/hf_tokenizer.h"

#include <chrono>
#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "tests/tokenizer_oracle.h"

namespace kvcc::tokenizer {
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
  const std::vector<int32_t> bytes = kvcc::testing::ByteFallbackIds(*tok);
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

// Component variants the fixtures do not cover, made by editing a fixture's JSON, each checked
// against `tokenizers` on the corpus and on random ids: split behaviours, Digits runs,
// ByteLevel add_prefix_space, unk fusing without byte fallback, regex Replace and Strip
// normalizers, Strip decoder with stop, Metaspace prepend schemes, no decoder, ignore_merges,
// single_word / lstrip / rstrip added tokens.
json Fixture(const std::string& name) {
  std::ifstream in(SourcePath("tests/data/tokenizers/" + name));
  return json::parse(in, nullptr, false);
}

std::vector<std::pair<std::string, json>> Variants() {
  std::vector<std::pair<std::string, json>> v;
  const json bytelevel_plain = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
  json j = Fixture("gpt2_bytelevel.json");
  j["pre_tokenizer"]["add_prefix_space"] = true;
  j["post_processor"] = nullptr;
  v.emplace_back("bytelevel_prefix_space", j);
  j = Fixture("gpt2_bytelevel.json");
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {
      {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "MergedWithPrevious"}, {"invert", false}},
      bytelevel_plain}}};
  v.emplace_back("split_merged_with_previous", j);
  j["pre_tokenizer"]["pretokenizers"][0] =
      {{"type", "Split"}, {"pattern", {{"String", "e"}}}, {"behavior", "MergedWithNext"}, {"invert", false}};
  v.emplace_back("split_merged_with_next", j);
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {
      {{"type", "Split"}, {"pattern", {{"String", ","}}}, {"behavior", "Removed"}, {"invert", false}},
      {{"type", "Digits"}, {"individual_digits", false}},
      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", true}}}}};
  v.emplace_back("split_removed_digit_runs", j);
  j = Fixture("gpt2_bytelevel.json");
  j["decoder"] = nullptr;
  j["added_tokens"].push_back({{"id", 1002}, {"content", "cat"}, {"single_word", true}, {"lstrip", false},
                               {"rstrip", false}, {"normalized", false}, {"special", false}});
  j["added_tokens"].push_back({{"id", 1003}, {"content", "<|im_start|>"}, {"single_word", false}, {"lstrip", true},
                               {"rstrip", true}, {"normalized", false}, {"special", true}});
  v.emplace_back("no_decoder_added_flags", j);
  j = Fixture("llama3_bytelevel.json");
  j["model"]["ignore_merges"] = false;
  v.emplace_back("llama3_without_ignore_merges", j);
  j = Fixture("llama2_spm_bpe.json");
  j["model"]["byte_fallback"] = false;
  v.emplace_back("unk_fused", j);
  j["model"]["fuse_unk"] = false;
  v.emplace_back("unk_unfused", j);
  j = Fixture("llama2_spm_bpe.json");
  j["normalizer"]["normalizers"].insert(j["normalizer"]["normalizers"].begin(), {
      {{"type", "Strip"}, {"strip_left", false}, {"strip_right", true}},
      {{"type", "Replace"}, {"pattern", {{"Regex", " {2,}|\t"}}}, {"content", " $1 "}}});
  j["decoder"]["decoders"][3] = {{"type", "Strip"}, {"content", " "}, {"start", 2}, {"stop", 1}};
  v.emplace_back("regex_replace_strip_stop", j);
  for (const char* scheme : {"always", "never"}) {
    j = Fixture("metaspace_bpe.json");
    j["pre_tokenizer"]["prepend_scheme"] = scheme;
    j["pre_tokenizer"]["split"] = false;
    j["decoder"]["prepend_scheme"] = scheme;
    v.emplace_back(std::string("metaspace_") + scheme, j);
  }
  // Patterns outside the recognised byte-level ones run on RE2, with Oniguruma's Unicode \s \w
  // \d, line anchors and (?m) as dot-all.
  j = Fixture("gpt2_bytelevel.json");
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {
      {{"type", "Split"}, {"pattern", {{"Regex", "\\d{1,2}|\\w+|\\s+|[^\\w\\s]+"}}}, {"behavior", "Isolated"}, {"invert", false}},
      bytelevel_plain}}};
  v.emplace_back("re2_split_unicode_classes", j);
  j["pre_tokenizer"]["pretokenizers"][0] =
      {{"type", "Split"}, {"pattern", {{"Regex", "^ +| +$|\\h+|(?m:e.)"}}}, {"behavior", "Removed"}, {"invert", false}};
  v.emplace_back("re2_split_anchors_removed", j);
  j["pre_tokenizer"]["pretokenizers"][0] =
      {{"type", "Split"}, {"pattern", {{"Regex", "x*"}}}, {"behavior", "MergedWithNext"}, {"invert", false}};
  v.emplace_back("re2_split_empty_matches", j);
  j = Fixture("llama2_spm_bpe.json");
  const json unicode_replace = {{"type", "Replace"}, {"pattern", {{"Regex", "\\p{Lu}\\p{Ll}+|\\s{2,}|[^\\w\\n]\\n"}}}, {"content", "#"}};
  j["normalizer"]["normalizers"].insert(j["normalizer"]["normalizers"].begin(), unicode_replace);
  v.emplace_back("re2_replace_unicode", j);
  // ignore_merges decides between merging to "abc" and looking it up whole.
  for (bool ignore : {false, true}) {
    json tiny = {{"model", {{"type", "BPE"}, {"ignore_merges", ignore},
                            {"vocab", {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}}},
                            {"merges", {"b c", "a b"}}}},
                 {"pre_tokenizer", {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Removed"}, {"invert", false}}}};
    v.emplace_back(ignore ? "tiny_ignore_merges" : "tiny_merges", tiny);
  }
  return v;
}

TEST(HfTokenizerTest, ComponentVariantsMatchHuggingFaceTokenizers) {
  if (kvcc::testing::OraclePython() == nullptr) GTEST_SKIP() << "KVCC_PYTHON not set";
  auto texts = kvcc::testing::TokenizerCorpus();
  texts.push_back("abc ab bc cab abcabc ca");
  texts.push_back("a cat, concat cats <|im_start|> \n the cat");
  for (const auto& [name, j] : Variants()) {
    SCOPED_TRACE(name);
    ASSERT_FALSE(j.is_null());
    const std::string dir = kvcc::testing::TempDir(name);
    const std::string path = dir + "/tokenizer.json";
    {
      std::ofstream out(path);
      out << j.dump();
    }
    KVCC_ASSERT_OK_AND_ASSIGN(tok, HfTokenizer::FromFile(path));
    const auto id_lists = kvcc::testing::RandomIdLists(tok->vocab_size(), 60, 10, 7);
    json request = {{"tokenizer_json", path}, {"texts", texts}, {"id_lists", id_lists}};
    KVCC_ASSERT_OK_AND_ASSIGN(oracle, kvcc::testing::RunTokenizerOracle(request, dir));
    for (size_t i = 0; i < texts.size(); ++i) {
      SCOPED_TRACE(::testing::Message() << "text #" << i << ": \"" << texts[i] << "\"");
      KVCC_ASSERT_OK_AND_ASSIGN(ids, tok->Encode(texts[i]));
      EXPECT_EQ(ids, Ids(oracle["hf"]["encode"][i]["ids"]));
      KVCC_ASSERT_OK_AND_ASSIGN(text, tok->Decode(ids));
      EXPECT_EQ(text, oracle["hf"]["roundtrip"][i].get<std::string>());
    }
    for (size_t i = 0; i < id_lists.size(); ++i) {
      KVCC_ASSERT_OK_AND_ASSIGN(text, tok->Decode(id_lists[i]));
      EXPECT_EQ(text, oracle["hf"]["decode"][i]["text"].get<std::string>())
          << ::testing::PrintToString(id_lists[i]);
    }
  }
}

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
  EXPECT_NE(malformed.message().find("invalid JSON"), std::string::npos);
  EXPECT_NE(malformed.message().find("line 1, column 12"), std::string::npos) << malformed;

  EXPECT_NE(LoadError("[1, 2]").message().find("no \"model\""), std::string::npos);
  EXPECT_NE(LoadError(R"({"model": {"type": "WordPiece", "vocab": {}}})").message().find("WordPiece"),
            std::string::npos);
  EXPECT_NE(LoadError(R"({"model": {"type": "Unigram", "vocab": []}})").message().find("Unigram"),
            std::string::npos);
  EXPECT_NE(LoadError(MinimalBpe(R"(, "normalizer": {"type": "NFKC"})")).message().find("NFKC"),
            std::string::npos);
  EXPECT_NE(LoadError(MinimalBpe(R"(, "pre_tokenizer": {"type": "BertPreTokenizer"})"))
                .message().find("BertPreTokenizer"), std::string::npos);
  // Patterns RE2 cannot run (lookarounds, backreferences) are refused, the pattern named.
  for (const char* re : {"\\s+(?!\\S)", "(a)\\1", "(?<=a)b"}) {
    SCOPED_TRACE(re);
    const std::string quoted = json(re).dump();
    const absl::Status s = LoadError(MinimalBpe(absl::StrCat(
        R"(, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": )", quoted,
        R"(}, "behavior": "Isolated", "invert": false})")));
    EXPECT_NE(s.message().find(re), std::string::npos) << s;
    EXPECT_NE(s.message().find("bad/tokenizer.json"), std::string::npos) << s;
    EXPECT_NE(s.message().find("RE2"), std::string::npos) << s;
  }
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

// Regexes run on RE2: a run of spaces that std::regex recursed over once per character (and
// crashed on) and a pattern that backtracks exponentially both finish at once.
TEST(HfTokenizerTest, RegexesRunInLinearTime) {
  KVCC_ASSERT_OK_AND_ASSIGN(
      tok, HfTokenizer::FromFile(SourcePath("models/stories260K/tokenizer.json")));
  const std::string spaces = "Once" + std::string(30000, ' ') + "upon";
  KVCC_ASSERT_OK_AND_ASSIGN(ids, tok->Encode(spaces));
  KVCC_ASSERT_OK_AND_ASSIGN(expected, tok->Encode("Once upon"));  // " {2,}" -> " "
  EXPECT_EQ(ids, expected);

  const auto start = std::chrono::steady_clock::now();
  for (const char* component :
       {R"("pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(a|a)*b"}, "behavior": "Removed", "invert": false})",
        R"("normalizer": {"type": "Replace", "pattern": {"Regex": "(a|a)*b"}, "content": "b"})"}) {
    SCOPED_TRACE(component);
    KVCC_ASSERT_OK_AND_ASSIGN(
        t, HfTokenizer::FromJson(absl::StrCat(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []}, )",
                                              component, "}"),
                                 "backtrack.json"));
    KVCC_ASSERT_OK_AND_ASSIGN(a_ids, t->Encode(std::string(40, 'a')));
    EXPECT_EQ(a_ids, std::vector<int32_t>(40, 0));
    KVCC_ASSERT_OK_AND_ASSIGN(ab_ids, t->Encode(std::string(40, 'a') + "b" + std::string(1 << 16, 'a')));
    EXPECT_EQ(ab_ids.size(), (component[1] == 'p' ? 0 : 1) + (size_t{1} << 16));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

// Wrong JSON types, ids that are not integers, duplicate or out-of-range ids, and hostile
// nesting are refused at load with the file and the key named.
TEST(HfTokenizerTest, RejectsInvalidIdsAndStructure) {
  struct Case {
    std::string json;
    std::vector<std::string> needles;
  };
  const std::string added = R"(, "added_tokens": [{"id": 3, "content": "<s>", "special": true}, )";
  const std::vector<Case> cases = {
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": {}}})", {"'model.merges'", "expected an array"}},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}})", {"'model.merges'", "missing"}},
      {R"({"model": {"type": "BPE", "vocab": [], "merges": []}})", {"'model.vocab'", "expected an object"}},
      {R"({"model": {"type": "BPE", "vocab": {"foo": 5.5}, "merges": []}})", {"model.vocab[\"foo\"] is 5.5", "expected an integer id"}},
      {R"({"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}})", {"model.vocab[\"a\"]", "-1"}},
      {R"({"model": {"type": "BPE", "vocab": {"a": 4294967296}, "merges": []}})", {"model.vocab[\"a\"]", "4294967296"}},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}})", {"model.vocab[\"b\"] is 0", "already the id of \"a\""}},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a", 1]]}})", {"'model.merges[0]'"}},
      {MinimalBpe(R"(, "added_tokens": {"id": 3})"), {"'added_tokens'", "expected an array"}},
      {MinimalBpe(R"(, "added_tokens": [{"id": 3.0, "content": "<s>"}])"), {"'added_tokens[0].id'", "3.0"}},
      {MinimalBpe(R"(, "added_tokens": [{"id": 3, "content": 7}])"), {"'added_tokens[0].content'", "a string"}},
      {MinimalBpe(R"(, "added_tokens": [{"id": 3, "content": "<s>", "special": "yes"}])"), {"'added_tokens[0].special'"}},
      {MinimalBpe(added + R"({"id": 3, "content": "</s>"}])"), {"'added_tokens[1]'", "already the id of added token \"<s>\""}},
      {MinimalBpe(R"(, "added_tokens": [{"id": 0, "content": "b"}])"), {"'added_tokens[0]'", "model.vocab has it as 1"}},
      {MinimalBpe(R"(, "normalizer": {"type": "Sequence", "normalizers": {}})"), {"'normalizer.normalizers'", "an array"}},
      {MinimalBpe(R"(, "normalizer": {"type": "Replace", "pattern": {"Regex": 5}, "content": ""})"), {"'normalizer.pattern.Regex'"}},
      {MinimalBpe(R"(, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [7]})"), {"'pre_tokenizer.pretokenizers[0]'", "an object"}},
      {MinimalBpe(R"(, "decoder": {"type": "Strip", "content": " ", "start": 1e12, "stop": 0})"), {"'decoder.start'"}},
      {MinimalBpe(R"(, "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {}}], "special_tokens": {"<s>": {"ids": [1.5]}}})"),
       {"'post_processor.special_tokens.<s>.ids[0]'", "1.5"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.json);
    const absl::Status s = LoadError(c.json);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("bad/tokenizer.json"), std::string::npos) << s;
    for (const std::string& needle : c.needles) EXPECT_NE(s.message().find(needle), std::string::npos) << s;
  }
  // 86,000 nesting levels: an error from the bounded parser, no stack overflow.
  const absl::Status deep = LoadError(MinimalBpe(absl::StrCat(", \"normalizer\": ", std::string(86000, '['),
                                                              std::string(86000, ']'))));
  EXPECT_NE(deep.message().find("nested deeper"), std::string::npos) << deep;
  // Sequences within sequences past the recursion bound.
  std::string seq = R"({"type": "NFC"})";
  for (int i = 0; i < 40; ++i) seq = absl::StrCat(R"({"type": "Sequence", "normalizers": [)", seq, "]}");
  const absl::Status nested = LoadError(MinimalBpe(", \"normalizer\": " + seq));
  EXPECT_NE(nested.message().find("Sequence nested deeper"), std::string::npos) << nested;
  // The same added token restated with its vocab id loads.
  KVCC_ASSERT_OK(HfTokenizer::FromJson(MinimalBpe(R"(, "added_tokens": [{"id": 0, "content": "a"}, {"id": 0, "content": "a"}])"), "ok.json").status());
}

// Structurally corrupted tokenizer.json files (values swapped for other JSON types, numbers
// made huge or negative, strings emptied) must load with an error or work, never crash.
TEST(HfTokenizerTest, CorruptedFilesFailCleanly) {
  std::ifstream in(SourcePath("tests/data/tokenizers/llama3_bytelevel.json"));
  const json original = json::parse(in, nullptr, false);
  ASSERT_FALSE(original.is_discarded());
  // Every path into the document except the bulk of vocab/merges, to keep the run short.
  std::vector<json::json_pointer> paths;
  const json flat = original.flatten();
  for (auto it = flat.begin(); it != flat.end(); ++it) {
    const std::string& p = it.key();
    if ((p.rfind("/model/vocab/", 0) == 0 || p.rfind("/model/merges/", 0) == 0) && paths.size() % 50 != 0) {
      paths.emplace_back(p.substr(0, p.find('/', 7)));  // the container itself now and then
      continue;
    }
    paths.emplace_back(p);
  }
  const std::vector<json> replacements = {nullptr, -1, int64_t{1} << 40, 3.5, "", "<0x>", json::array(),
                                          json::object(), true, json::array({1, "a"})};
  std::mt19937 rng(17);
  int loaded = 0, rejected = 0;
  for (int i = 0; i < 400; ++i) {
    json j = original;
    for (int k = 0; k < 2; ++k) {
      const auto& path = paths[rng() % paths.size()];
      try {  // the first edit may have removed the second one's parent
        j[path] = replacements[rng() % replacements.size()];
      } catch (const json::exception&) {
      }
    }
    auto tok = HfTokenizer::FromJson(j.dump(), "corrupt.json");
    if (!tok.ok()) {
      ++rejected;
      EXPECT_NE(tok.status().message().find("corrupt.json"), std::string::npos) << tok.status();
      continue;
    }
    ++loaded;
    for (const std::string& text : {std::string("Hello <|eot_id|> w\xC3\xB6rld 123"), std::string()}) {
      auto ids = (*tok)->Encode(text);
      ASSERT_TRUE(ids.ok());
      for (int32_t id : *ids) ASSERT_TRUE(id >= 0 && id < (*tok)->vocab_size());
      EXPECT_TRUE((*tok)->Decode(*ids).ok());
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(loaded, 0);
}

}  // namespace
}  // namespace kvcc::tokenizer
