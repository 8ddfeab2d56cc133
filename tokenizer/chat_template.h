// Chat prompt formats: a model's own Jinja chat template (interpreted by tokenizer/jinja_template)
// or, for models that ship none, one of four named formats (Llama-2 chat, ChatML, InternLM2,
// InternLM v1) rendered in C++ exactly as their published templates render.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace kvcc::tokenizer {

enum class ChatTemplate { kLlama2, kChatml, kInternlm2, kInternlm };

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// Text of the tokenizer's BOS / EOS tokens, which some templates write into the prompt. A Jinja
// template sees bos_token / eos_token undefined where they are empty (the tokenizer has none).
struct ChatSpecialTokens {
  std::string bos = "<s>";
  std::string eos = "</s>";
};

namespace jinja {
class Template;
}

const char* ChatTemplateName(ChatTemplate t);
// "llama2, chatml, internlm2, internlm".
std::string KnownChatTemplateNames();
// The template called `name` (as given to --chat-template); an error lists the known names.
absl::StatusOr<ChatTemplate> ChatTemplateByName(absl::string_view name);

// The prompt text for `messages`, ending with the assistant turn's opening when
// add_generation_prompt. Encode it with special-token parsing on and without adding BOS
// (the text carries it where the template does). Errors on an empty conversation, unknown
// roles, or an order the template forbids.
absl::StatusOr<std::string> RenderChat(ChatTemplate t, const std::vector<ChatMessage>& messages,
                                       bool add_generation_prompt,
                                       const ChatSpecialTokens& tokens = ChatSpecialTokens());

// A chat format ready to render: a model's Jinja template (rendered as transformers'
// apply_chat_template renders it) or a named one.
class ChatFormat {
 public:
  static ChatFormat Named(ChatTemplate t, ChatSpecialTokens tokens);
  // Parses `source`; errors (and later render errors) name `origin`, the file it came from.
  static absl::StatusOr<ChatFormat> FromJinja(absl::string_view source, const std::string& origin,
                                              ChatSpecialTokens tokens);

  absl::StatusOr<std::string> Render(const std::vector<ChatMessage>& messages,
                                     bool add_generation_prompt) const;
  // Messages as JSON objects, with any fields a template reads (tool_calls, ...), and the
  // `tools` list (null: none). A named format takes only string role and content.
  absl::StatusOr<std::string> RenderJson(const nlohmann::ordered_json& messages,
                                         const nlohmann::ordered_json& tools,
                                         bool add_generation_prompt) const;
  // "the Jinja chat template of <origin>" or "the named chat template <name>".
  std::string Describe() const;

 private:
  ChatTemplate named_ = ChatTemplate::kChatml;
  std::shared_ptr<const jinja::Template> jinja_;
  std::string origin_;
  ChatSpecialTokens tokens_;
};

}  // namespace kvcc::tokenizer
