// LoadTokenizer on model directories: tokenizer.json preferred over tokenizer.model,
// tokenizer_config.json flags and tokens applied, the model's Jinja chat template found
// (chat_template.jinja first) or a named one chosen, and
// clear errors (naming the file) for missing and malformed files.
#include "tokenizer/tokenizer_loader.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/sentencepiece_tokenizer.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace kvcc::tokenizer {
namespace {

namespace fs = std::filesystem;
using kvcc::testing::SharedPath;

void Write(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

void CopyFrom(const std::string& dir, const std::string& shared_rel, const std::string& name) {
  fs::copy_file(SharedPath(shared_rel), fs::path(dir) / name, fs::copy_options::overwrite_existing);
}

TEST(TokenizerLoaderTest, Stories260KPrefersTokenizerJson) {
  auto loaded = LoadTokenizer(SharedPath("models/stories260K"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(fs::path(loaded->tokenizer_file).filename(), "tokenizer.json");
  EXPECT_NE(dynamic_cast<HfTokenizer*>(loaded->tokenizer.get()), nullptr);
  EXPECT_EQ(loaded->tokenizer->bos_id(), 1);
  EXPECT_EQ(loaded->tokenizer->eos_id(), 2);
  EXPECT_EQ(loaded->chat_tokens.bos, "<s>");
  EXPECT_EQ(loaded->chat_tokens.eos, "</s>");
  EXPECT_EQ(loaded->config.add_bos_token, std::optional<bool>(true));
  auto ids = loaded->tokenizer->Encode("Once upon a time");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->front(), 1);
  EXPECT_NE(ids->back(), 2);
  // stories260K has no chat_template: an explicit one is needed.
  auto none = ResolveChatTemplate(*loaded, "");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("tokenizer_config.json"), std::string::npos);
  EXPECT_NE(none.status().message().find("--chat-template"), std::string::npos);
  EXPECT_EQ(ResolveChatTemplate(*loaded, "llama2")->Describe(), "the named chat template llama2");
  auto bogus = ResolveChatTemplate(*loaded, "bogus");
  ASSERT_FALSE(bogus.ok());
  EXPECT_NE(bogus.status().message().find("llama2, chatml, internlm2, internlm"), std::string::npos);
}

TEST(TokenizerLoaderTest, FallsBackToTokenizerModelAndAppliesConfigFlags) {
  const std::string dir = kvcc::testing::TempDir("spm");
  CopyFrom(dir, "models/stories260K/tokenizer.model", "tokenizer.model");
  Write(dir + "/tokenizer_config.json",
        R"({"add_bos_token": false, "add_eos_token": true, "bos_token": {"content": "<s>"}, "eos_token": "</s>",
            "chat_template": [{"name": "default", "template": "{{ '<|im_start|>' }}"}]})");
  auto loaded = LoadTokenizer(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(fs::path(loaded->tokenizer_file).filename(), "tokenizer.model");
  EXPECT_NE(dynamic_cast<SentencePieceTokenizer*>(loaded->tokenizer.get()), nullptr);
  auto ids = loaded->tokenizer->Encode("Hello");
  ASSERT_TRUE(ids.ok());
  EXPECT_NE(ids->front(), 1);
  EXPECT_EQ(ids->back(), 2);
  // The list form's "default" entry is the model's template, interpreted.
  auto chat = ResolveChatTemplate(*loaded, "");
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(*chat->Render({{"user", "x"}}, true), "<|im_start|>");
  EXPECT_EQ(chat->Describe(), "the Jinja chat template of " + dir + "/tokenizer_config.json");
}

// transformers 5 saves the template as chat_template.jinja beside the config; that file wins
// over the config's chat_template, as transformers' loader gives it precedence.
TEST(TokenizerLoaderTest, ChatTemplateJinjaFileTakesPrecedence) {
  const std::string dir = kvcc::testing::TempDir("jinja_file");
  CopyFrom(dir, "models/stories260K/tokenizer.json", "tokenizer.json");
  Write(dir + "/tokenizer_config.json", R"({"bos_token": "<s>", "eos_token": "</s>", "chat_template": "from config"})");
  auto config_only = LoadTokenizer(dir);
  ASSERT_TRUE(config_only.ok()) << config_only.status();
  EXPECT_EQ(*ResolveChatTemplate(*config_only, "")->Render({{"user", "x"}}, false), "from config");
  Write(dir + "/chat_template.jinja",
        "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content | trim }}{{ eos_token }}\n{% endfor %}\n");
  auto loaded = LoadTokenizer(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->chat_template_file, dir + "/chat_template.jinja");
  auto chat = ResolveChatTemplate(*loaded, "");
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(*chat->Render({{"user", " hi "}, {"assistant", "yo"}}, true), "<s>[user]hi</s>\n[assistant]yo</s>\n");
  // --chat-template still picks a named format.
  EXPECT_EQ(*ResolveChatTemplate(*loaded, "chatml")->Render({{"user", "x"}}, false), "<|im_start|>user\nx<|im_end|>\n");
  // A template the interpreter refuses: the error names the file, line and the way out.
  Write(dir + "/chat_template.jinja", "ok\n{% include 'other.jinja' %}");
  auto bad = ResolveChatTemplate(*LoadTokenizer(dir), "");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(dir + "/chat_template.jinja: chat template line 2"), std::string::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("--chat-template"), std::string::npos);
}

TEST(TokenizerLoaderTest, ConfigFlagsRebuildTokenizerJsonBosEos) {
  const std::string dir = kvcc::testing::TempDir("json");
  CopyFrom(dir, "models/stories260K/tokenizer.json", "tokenizer.json");
  Write(dir + "/tokenizer_config.json",
        R"({"add_bos_token": false, "add_eos_token": true, "eos_token": "</s>", "chat_template": "[INST] x [/INST]"})");
  auto loaded = LoadTokenizer(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  auto ids = loaded->tokenizer->Encode("Hello");
  ASSERT_TRUE(ids.ok());
  EXPECT_NE(ids->front(), 1);
  EXPECT_EQ(ids->back(), 2);
  EXPECT_EQ(*ResolveChatTemplate(*loaded, "")->Render({{"user", "x"}}, false), "[INST] x [/INST]");
  EXPECT_EQ(ResolveChatTemplate(*loaded, "internlm2")->Describe(), "the named chat template internlm2");
  // Without a config, the post-processor's BOS stays.
  fs::remove(dir + "/tokenizer_config.json");
  auto bare = LoadTokenizer(dir);
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_EQ(bare->tokenizer->Encode("Hello")->front(), 1);
  auto none = ResolveChatTemplate(*bare, "");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("--chat-template"), std::string::npos);
}

TEST(TokenizerLoaderTest, ErrorsNameTheMissingOrBadFile) {
  auto missing_dir = LoadTokenizer("/nonexistent/model");
  ASSERT_FALSE(missing_dir.ok());
  EXPECT_NE(missing_dir.status().message().find("/nonexistent/model"), std::string::npos);

  const std::string empty = kvcc::testing::TempDir("empty");
  auto no_tok = LoadTokenizer(empty);
  ASSERT_FALSE(no_tok.ok());
  EXPECT_EQ(no_tok.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(no_tok.status().message().find("tokenizer.json or tokenizer.model"), std::string::npos);

  const std::string bad_json = kvcc::testing::TempDir("bad_json");
  Write(bad_json + "/tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": ");
  auto r1 = LoadTokenizer(bad_json);
  ASSERT_FALSE(r1.ok());
  EXPECT_NE(r1.status().message().find(bad_json + "/tokenizer.json"), std::string::npos);

  const std::string bad_model = kvcc::testing::TempDir("bad_model");
  Write(bad_model + "/tokenizer.model", "\x0a\x05garbage-not-a-model");
  auto r2 = LoadTokenizer(bad_model);
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find(bad_model + "/tokenizer.model"), std::string::npos);

  const std::string bad_config = kvcc::testing::TempDir("bad_config");
  CopyFrom(bad_config, "models/stories260K/tokenizer.json", "tokenizer.json");
  Write(bad_config + "/tokenizer_config.json", "{ not json");
  auto r3 = LoadTokenizer(bad_config);
  ASSERT_FALSE(r3.ok());
  EXPECT_NE(r3.status().message().find("tokenizer_config.json"), std::string::npos);

  Write(bad_config + "/tokenizer_config.json", R"({"add_bos_token": "yes"})");
  auto r4 = LoadTokenizer(bad_config);
  ASSERT_FALSE(r4.ok());
  EXPECT_NE(r4.status().message().find("add_bos_token"), std::string::npos);

  Write(bad_config + "/tokenizer_config.json", R"({"bos_token": "<|not_in_vocab|>"})");
  auto r5 = LoadTokenizer(bad_config);
  ASSERT_FALSE(r5.ok());
  EXPECT_NE(r5.status().message().find("<|not_in_vocab|>"), std::string::npos);

  Write(bad_config + "/tokenizer_config.json", R"({"chat_template": "{{ messages | wordwrap }}"})");
  auto r6 = LoadTokenizer(bad_config);
  ASSERT_TRUE(r6.ok()) << r6.status();
  auto unknown = ResolveChatTemplate(*r6, "");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("tokenizer_config.json: chat template line 1, column"), std::string::npos)
      << unknown.status();
  EXPECT_NE(unknown.status().message().find("wordwrap"), std::string::npos);
  EXPECT_NE(unknown.status().message().find("--chat-template"), std::string::npos);
}

// Tokenizer files that are FIFOs or directories are refused by name, never read or waited on;
// a tokenizer_config.json nested without bound is a parse error, not a stack overflow.
TEST(TokenizerLoaderTest, NonRegularAndHostileFilesAreRefused) {
  for (const char* name : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json"}) {
    SCOPED_TRACE(name);
    const std::string dir = testing::TempDir(std::string("fifo_") + name);
    ASSERT_EQ(::mkfifo((dir + "/" + name).c_str(), 0600), 0);
    auto loaded = LoadTokenizer(dir);
    ASSERT_FALSE(loaded.ok());
    EXPECT_NE(loaded.status().message().find(dir + "/" + name + " is a FIFO"), std::string::npos)
        << loaded.status();
  }
  const std::string dir = testing::TempDir("dir_tokenizer");
  std::filesystem::create_directory(dir + "/tokenizer.json");
  auto loaded = LoadTokenizer(dir);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("is a directory"), std::string::npos) << loaded.status();
  const std::string deep = testing::TempDir("deep_config");
  std::ofstream(deep + "/tokenizer_config.json") << std::string(86000, '[') << std::string(86000, ']');
  loaded = LoadTokenizer(deep);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("nested deeper"), std::string::npos) << loaded.status();
}

}  // namespace
}  // namespace kvcc::tokenizer
