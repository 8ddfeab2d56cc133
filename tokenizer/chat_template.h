// Chat prompt formats of the supported model families (Llama-2 chat, ChatML, InternLM2,
// InternLM v1), rendered in C++ exactly as their published templates render, and recognised
// from a tokenizer_config.json chat_template by its markers (we do not interpret Jinja).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvcc::tokenizer {

enum class ChatTemplate { kLlama2, kChatml, kInternlm2, kInternlm };

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// Text of the tokenizer's BOS / EOS tokens, which some templates write into the prompt.
struct ChatSpecialTokens {
  std::string bos = "<s>";
  std::string eos = "</s>";
};

const char* ChatTemplateName(ChatTemplate t);
// "llama2, chatml, internlm2, internlm".
std::string KnownChatTemplateNames();
// The template called `name` (as given to --chat-template); an error lists the known names.
absl::StatusOr<ChatTemplate> ChatTemplateByName(absl::string_view name);
// The family of a Jinja chat_template string; `source` (the config file) is named in errors,
// which suggest --chat-template.
absl::StatusOr<ChatTemplate> DetectChatTemplate(absl::string_view jinja, const std::string& source);

// The prompt text for `messages`, ending with the assistant turn's opening when
// add_generation_prompt. Encode it with special-token parsing on and without adding BOS
// (the text carries it where the template does). Errors on an empty conversation, unknown
// roles, or an order the template forbids.
absl::StatusOr<std::string> RenderChat(ChatTemplate t, const std::vector<ChatMessage>& messages,
                                       bool add_generation_prompt,
                                       const ChatSpecialTokens& tokens = ChatSpecialTokens());

}  // namespace kvcc::tokenizer
