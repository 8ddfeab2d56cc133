// Chat templates: renders compared with the exact strings the published Jinja templates
// produce (sources cited per test), family detection from real chat_template strings, and
// the errors for unknown names, bad role orders and unrecognised templates.
#include "tokenizer/chat_template.h"

#include "tokenizer/hf_tokenizer.h"
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

TEST(ChatTemplateTest, DetectsFamiliesFromPublishedJinja) {
  EXPECT_EQ(*DetectChatTemplate(kLlama2Jinja, "cfg"), ChatTemplate::kLlama2);
  EXPECT_EQ(*DetectChatTemplate(kChatmlJinja, "cfg"), ChatTemplate::kChatml);
  EXPECT_EQ(*DetectChatTemplate(kInternlm2Jinja, "cfg"), ChatTemplate::kInternlm2);
  EXPECT_EQ(*DetectChatTemplate("{{ '<|User|>:' + m + '<eoh>\\n<|Bot|>:' }}", "cfg"), ChatTemplate::kInternlm);
  // Zephyr's template is none of ours: the error names the file and suggests --chat-template.
  auto zephyr = DetectChatTemplate(
      "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] "
      "+ eos_token }}{% endif %}{% endfor %}", "model/tokenizer_config.json");
  ASSERT_FALSE(zephyr.ok());
  EXPECT_NE(zephyr.status().message().find("model/tokenizer_config.json"), std::string::npos);
  EXPECT_NE(zephyr.status().message().find("--chat-template"), std::string::npos);
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
