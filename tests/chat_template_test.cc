// Chat templates: the named formats compared with the exact strings their published Jinja
// templates produce (sources cited per test) and with the interpreter running that Jinja; the
// published templates of seven model families against Python jinja2; errors for unknown
// names and bad role orders.
#include "tokenizer/chat_template.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "tokenizer/hf_tokenizer.h"
#include "tests/render_chat_oracle.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace kvcc::tokenizer {
namespace {

const std::vector<ChatMessage> kConversation = {
    {"system", "You are a helpful assistant."},
    {"user", "Hello!"},
    {"assistant", "Hi! How can I help?"},
    {"user", "Tell me a joke."},
};

// meta-llama/Llama-2-7b-chat-hf, tokenizer_config.json "chat_template" (published with the
// model; also transformers' LlamaTokenizer.default_chat_template with use_default_system_prompt
// off). Rendered by hand from the template: <<SYS>> block folded into the first user turn,
// contents strip()ed, assistant turns closed by " </s>".
constexpr const char* kLlama2Jinja =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}"
    "{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif "
    "message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

TEST(ChatTemplateTest, Llama2MatchesPublishedTemplate) {
  auto text = RenderChat(ChatTemplate::kLlama2, kConversation, true);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text,
            "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello! [/INST] Hi! How can I "
            "help? </s><s>[INST] Tell me a joke. [/INST]");
  // No system message; whitespace around contents is stripped.
  auto plain = RenderChat(ChatTemplate::kLlama2, {{"user", "  What is 2+2?\n"}}, true);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(*plain, "<s>[INST] What is 2+2? [/INST]");
  // The tokenizer's own BOS/EOS text is used.
  auto custom = RenderChat(ChatTemplate::kLlama2, {{"user", "a"}, {"assistant", "b"}}, false, {"<BOS>", "<EOS>"});
  ASSERT_TRUE(custom.ok());
  EXPECT_EQ(*custom, "<BOS>[INST] a [/INST] b <EOS>");
}

// The ChatML template of the transformers chat-templating documentation (as shipped by e.g.
// teknium/OpenHermes-2.5-Mistral-7B and Qwen without its default system message):
// {% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] +
// '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}
constexpr const char* kChatmlJinja =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

TEST(ChatTemplateTest, ChatmlMatchesPublishedTemplate) {
  auto text = RenderChat(ChatTemplate::kChatml, kConversation, true);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text,
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n"
            "<|im_start|>assistant\nHi! How can I help?<|im_end|>\n<|im_start|>user\nTell me a joke.<|im_end|>\n"
            "<|im_start|>assistant\n");
  auto no_prompt = RenderChat(ChatTemplate::kChatml, {{"user", " keep  spaces "}}, false);
  ASSERT_TRUE(no_prompt.ok());
  EXPECT_EQ(*no_prompt, "<|im_start|>user\n keep  spaces <|im_end|>\n");
}

// internlm/internlm2-chat-7b tokenizer_config.json "chat_template":
// {{ bos_token }}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' +
// message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{
// '<|im_start|>assistant\n' }}{% endif %}
constexpr const char* kInternlm2Jinja =
    "{{ bos_token }}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\\n' }}{% endif %}";

TEST(ChatTemplateTest, Internlm2MatchesPublishedTemplate) {
  auto text = RenderChat(ChatTemplate::kInternlm2, {{"system", "Be brief."}, {"user", "Hi"}}, true);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text,
            "<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

// internlm/internlm-chat-7b (v1.0) modeling_internlm.py, InternLMForCausalLM.build_inputs:
//   for record in history: prompt += f"<s><|User|>:{record[0]}<eoh>\n<|Bot|>:{record[1]}<eoa>\n"
//   if len(prompt) == 0: prompt += "<s>"
//   prompt += f"<|User|>:{query}<eoh>\n<|Bot|>:"
TEST(ChatTemplateTest, InternlmV1MatchesBuildInputs) {
  auto first = RenderChat(ChatTemplate::kInternlm, {{"user", "Hi"}}, true);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, "<s><|User|>:Hi<eoh>\n<|Bot|>:");
  auto later = RenderChat(ChatTemplate::kInternlm,
                          {{"user", "Hi"}, {"assistant", "Hello!"}, {"user", "How are you?"}}, true);
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(*later, "<s><|User|>:Hi<eoh>\n<|Bot|>:Hello!<eoa>\n<|User|>:How are you?<eoh>\n<|Bot|>:");
  EXPECT_FALSE(RenderChat(ChatTemplate::kInternlm, kConversation, true).ok());  // no system role
}

// The named formats agree with the interpreter running the published Jinja they replace.
TEST(ChatTemplateTest, NamedFormatsMatchTheirJinja) {
  const std::vector<std::vector<ChatMessage>> conversations = {
      kConversation, {{"user", "  What is 2+2?\n"}}, {{"user", "a"}, {"assistant", "b"}}, {{"system", "S"}, {"user", "é 🙂"}}};
  const ChatSpecialTokens tokens{"<BOS>", "<EOS>"};
  for (const auto& [named, jinja] : std::vector<std::pair<ChatTemplate, const char*>>{
           {ChatTemplate::kLlama2, kLlama2Jinja}, {ChatTemplate::kChatml, kChatmlJinja}, {ChatTemplate::kInternlm2, kInternlm2Jinja}}) {
    auto format = ChatFormat::FromJinja(jinja, "cfg", tokens);
    ASSERT_TRUE(format.ok()) << format.status();
    for (const auto& conversation : conversations) {
      for (bool gen : {false, true}) {
        auto want = RenderChat(named, conversation, gen, tokens);
        ASSERT_TRUE(want.ok()) << want.status();
        auto got = format->Render(conversation, gen);
        ASSERT_TRUE(got.ok()) << got.status();
        EXPECT_EQ(*got, *want) << ChatTemplateName(named);
      }
    }
  }
  // A named format renders JSON messages too, refusing what it cannot represent.
  const auto named = ChatFormat::Named(ChatTemplate::kChatml, tokens);
  auto ok = named.RenderJson(nlohmann::ordered_json::parse(R"([{"role": "user", "content": "x"}])"), nullptr, true);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_FALSE(named.RenderJson(nlohmann::ordered_json::parse(R"([{"role": "user", "content": [1]}])"), nullptr, true).ok());
  EXPECT_EQ(named.Describe(), "the named chat template chatml");
}

// The published chat templates under tests/data/chat_templates/, rendered by kvcc and by
// Python jinja2 as transformers renders them, over conversations with and without system
// prompts, several turns, tool calls, empty and unicode content, and orders the templates
// refuse: identical bytes, or both an error (with raise_exception's message).
TEST(ChatTemplateTest, PublishedTemplatesMatchPythonJinja2) {
  if (kvcc::testing::JinjaOraclePython() == nullptr) GTEST_SKIP() << "KVCC_PYTHON is unset or lacks jinja2";
  using ojson = nlohmann::ordered_json;
  const ojson conversations = ojson::parse(R"([
    [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hello!"}],
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, how can I help?"}, {"role": "user", "content": "Tell me a joke."}],
    [{"role": "user", "content": "1"}, {"role": "assistant", "content": "2"}, {"role": "user", "content": "3"}, {"role": "assistant", "content": "4"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " Hello there \n"}],
    [{"role": "system", "content": ""}, {"role": "user", "content": ""}],
    [{"role": "user", "content": "こんにちは 🙂 café\n\t  spaced  "}, {"role": "assistant", "content": " ünïcödé Ωmega "}, {"role": "user", "content": "\u00a0nbsp\u3000"}],
    [{"role": "user", "content": "{{ bos_token }} {% if %} \\ \" ' <s> [INST]"}],
    [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
    [{"role": "assistant", "content": "I speak first"}],
    [{"role": "system", "content": "only a system prompt"}],
    [],
    [{"role": "user", "content": "What's the weather in Paris?"},
     {"role": "assistant", "content": "", "tool_calls": [{"id": "abc123xyz", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}}]},
     {"role": "tool", "tool_call_id": "abc123xyz", "content": "22"},
     {"role": "assistant", "content": "It is 22 degrees."}]
  ])");
  const ojson tools = ojson::parse(R"([{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}}, "required": ["city"]}}}])");
  struct Case {
    std::string file;
    size_t conversation;
    bool with_tools, gen, specials;
  };
  std::vector<Case> cases;
  ojson request = ojson::array();
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(kvcc::testing::SourcePath("tests/data/chat_templates"))) {
    if (entry.path().extension() == ".jinja") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  ASSERT_EQ(files.size(), 7u);
  for (const std::string& file : files) {
    const std::string source = kvcc::testing::ReadFileBytes(file);
    for (size_t c = 0; c < conversations.size(); ++c) {
      for (int variant = 0; variant < 4; ++variant) {
        const bool gen = variant & 1;
        const bool with_tools = c + 1 == conversations.size() && variant >= 2;
        const bool specials = variant < 2 || with_tools;
        cases.push_back({file, c, with_tools, gen, specials});
        ojson r = {{"template", source}, {"messages", conversations[c]}, {"tools", with_tools ? tools : ojson()},
                   {"add_generation_prompt", gen}};
        if (specials) {
          r["bos_token"] = "<s>";
          r["eos_token"] = "</s>";
        }
        request.push_back(r);
      }
    }
  }
  auto want = kvcc::testing::RunRenderChatOracle(request, kvcc::testing::TempDir("published"));
  ASSERT_TRUE(want.ok()) << want.status();
  std::map<std::string, int> rendered;
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    SCOPED_TRACE(absl::StrCat(c.file, " conversation ", c.conversation, " tools ", c.with_tools, " gen ", c.gen,
                              " specials ", c.specials));
    const ChatSpecialTokens tokens = c.specials ? ChatSpecialTokens{"<s>", "</s>"} : ChatSpecialTokens{"", ""};
    auto format = ChatFormat::FromJinja(request[i]["template"].get<std::string>(), c.file, tokens);
    ASSERT_TRUE(format.ok()) << format.status();
    auto got = format->RenderJson(conversations[c.conversation], request[i]["tools"], c.gen);
    const ojson& w = (*want)[i];
    if (w["ok"].get<bool>()) {
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, w["text"].get<std::string>());
      ++rendered[c.file];
    } else {
      EXPECT_FALSE(got.ok()) << "jinja2 failed with: " << w["error"] << "\nkvcc rendered: " << *got;
      if (w["raised"].get<bool>() && !got.ok()) {
        EXPECT_NE(got.status().message().find(w["error"].get<std::string>()), std::string::npos) << got.status();
        EXPECT_NE(got.status().message().find(c.file), std::string::npos) << got.status();
      }
    }
  }
  for (const std::string& file : files) EXPECT_GE(rendered[file], 12) << file;  // most conversations render
}

TEST(ChatTemplateTest, NamesAndErrors) {
  for (const char* name : {"llama2", "chatml", "internlm2", "internlm"}) {
    auto t = ChatTemplateByName(name);
    ASSERT_TRUE(t.ok());
    EXPECT_STREQ(ChatTemplateName(*t), name);
  }
  auto unknown = ChatTemplateByName("vicuna");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("vicuna"), std::string::npos);
  EXPECT_NE(unknown.status().message().find("llama2, chatml, internlm2, internlm"), std::string::npos);
  EXPECT_FALSE(RenderChat(ChatTemplate::kChatml, {}, true).ok());
  EXPECT_FALSE(RenderChat(ChatTemplate::kChatml, {{"robot", "x"}}, true).ok());
  EXPECT_FALSE(RenderChat(ChatTemplate::kChatml, {{"user", "x"}, {"system", "late"}}, true).ok());
  auto order = RenderChat(ChatTemplate::kLlama2, {{"user", "a"}, {"user", "b"}}, true);
  ASSERT_FALSE(order.ok());
  EXPECT_NE(order.status().message().find("alternate"), std::string::npos);
  EXPECT_FALSE(RenderChat(ChatTemplate::kLlama2, {{"assistant", "first"}}, true).ok());
}

TEST(ChatTemplateTest, RenderedSpecialTokensEncodeAsSingleIds) {
  auto tok = HfTokenizer::FromFile(kvcc::testing::SharedPath("models/stories260K/tokenizer.json"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto text = RenderChat(ChatTemplate::kLlama2, {{"user", "Hi"}, {"assistant", "Hello"}, {"user", "Bye"}}, true);
  ASSERT_TRUE(text.ok());
  auto ids = (*tok)->Encode(*text, {/*add_special_tokens=*/false, /*parse_special=*/true});
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(std::count(ids->begin(), ids->end(), 1), 2);  // two "<s>" written by the template
  EXPECT_EQ(std::count(ids->begin(), ids->end(), 2), 1);  // one "</s>"
  EXPECT_EQ(ids->front(), 1);
}

}  // namespace
}  // namespace kvcc::tokenizer
