#include "tokenizer/chat_template.h"

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"
#include "tokenizer/jinja_template.h"
#include "tokenizer/jinja_value.h"

namespace kvcc::tokenizer {
namespace {

// Python's str.strip(): the Llama-2 template strips every message.
std::string PyStrip(absl::string_view s) { return jinja::PyStrip(s, true, true); }

absl::Status CheckRoles(const std::vector<ChatMessage>& messages, ChatTemplate t) {
  if (messages.empty()) return absl::InvalidArgumentError("chat has no messages");
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& r = messages[i].role;
    if (r != "system" && r != "user" && r != "assistant") {
      return absl::InvalidArgumentError(absl::StrCat("chat message ", i, " has unknown role \"", r,
                                                     "\" (expected system, user or assistant)"));
    }
    if (r == "system" && i != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("chat message ", i, ": a system message may only come first (", ChatTemplateName(t), " template)"));
    }
  }
  return absl::OkStatus();
}

// Messages after an optional leading system message must go user, assistant, user, ...
absl::Status CheckAlternation(const std::vector<ChatMessage>& msgs, size_t first, ChatTemplate t) {
  for (size_t i = first; i < msgs.size(); ++i) {
    const bool want_user = (i - first) % 2 == 0;
    if ((msgs[i].role == "user") != want_user) {
      return absl::InvalidArgumentError(absl::StrCat(
          "chat message ", i, " (", msgs[i].role, "): conversation roles must alternate "
          "user/assistant/user/assistant/... for the ", ChatTemplateName(t), " template"));
    }
  }
  return absl::OkStatus();
}

// meta-llama/Llama-2-7b-chat-hf tokenizer_config.json chat_template: the system message is
// folded into the first user turn as "<<SYS>>\n...\n<</SYS>>\n\n"; each user turn is
// bos + "[INST] " + content.strip() + " [/INST]", each assistant turn " " + content.strip() +
// " " + eos. The template has no separate generation prompt.
absl::StatusOr<std::string> RenderLlama2(const std::vector<ChatMessage>& msgs,
                                         const ChatSpecialTokens& tok) {
  size_t first = 0;
  std::string system;
  bool has_system = false;
  if (msgs[0].role == "system") {
    has_system = true;
    system = msgs[0].content;
    first = 1;
  }
  KVCC_RETURN_IF_ERROR(CheckAlternation(msgs, first, ChatTemplate::kLlama2));
  std::string out;
  for (size_t i = first; i < msgs.size(); ++i) {
    std::string content = msgs[i].content;
    if (i == first && has_system) content = absl::StrCat("<<SYS>>\n", system, "\n<</SYS>>\n\n", content);
    if (msgs[i].role == "user") {
      absl::StrAppend(&out, tok.bos, "[INST] ", PyStrip(content), " [/INST]");
    } else {
      absl::StrAppend(&out, " ", PyStrip(content), " ", tok.eos);
    }
  }
  return out;
}

// The ChatML template as published in the transformers chat-templating docs (and used by
// Qwen/OpenHermes): "<|im_start|>" + role + "\n" + content + "<|im_end|>\n" per message, then
// "<|im_start|>assistant\n" as the generation prompt. InternLM2-chat's template
// (internlm/internlm2-chat-7b tokenizer_config.json) is the same preceded by bos_token.
std::string RenderChatml(const std::vector<ChatMessage>& msgs, bool gen) {
  std::string out;
  for (const ChatMessage& m : msgs) absl::StrAppend(&out, "<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n");
  if (gen) out += "<|im_start|>assistant\n";
  return out;
}

// InternLM v1 (internlm/internlm-chat-7b, modeling_internlm.py build_inputs): each finished
// round is "<s><|User|>:{user}<eoh>\n<|Bot|>:{bot}<eoa>\n"; the pending query is
// "<|User|>:{query}<eoh>\n<|Bot|>:", preceded by "<s>" only when there is no history. The
// format has no system role.
absl::StatusOr<std::string> RenderInternlm(const std::vector<ChatMessage>& msgs, bool gen,
                                           const ChatSpecialTokens& tok) {
  if (msgs[0].role == "system") {
    return absl::InvalidArgumentError("the internlm (v1) chat template has no system role; use internlm2 or drop the system message");
  }
  KVCC_RETURN_IF_ERROR(CheckAlternation(msgs, 0, ChatTemplate::kInternlm));
  std::string out;
  size_t i = 0;
  for (; i + 1 < msgs.size(); i += 2) {
    absl::StrAppend(&out, tok.bos, "<|User|>:", msgs[i].content, "<eoh>\n<|Bot|>:", msgs[i + 1].content, "<eoa>\n");
  }
  if (i < msgs.size()) {  // a pending user query
    if (out.empty()) out = tok.bos;
    absl::StrAppend(&out, "<|User|>:", msgs[i].content, "<eoh>\n");
    if (gen) out += "<|Bot|>:";
  }
  return out;
}

}  // namespace

const char* ChatTemplateName(ChatTemplate t) {
  switch (t) {
    case ChatTemplate::kLlama2: return "llama2";
    case ChatTemplate::kChatml: return "chatml";
    case ChatTemplate::kInternlm2: return "internlm2";
    case ChatTemplate::kInternlm: return "internlm";
  }
  return "";
}

std::string KnownChatTemplateNames() { return "llama2, chatml, internlm2, internlm"; }

absl::StatusOr<ChatTemplate> ChatTemplateByName(absl::string_view name) {
  for (ChatTemplate t : {ChatTemplate::kLlama2, ChatTemplate::kChatml, ChatTemplate::kInternlm2,
                         ChatTemplate::kInternlm}) {
    if (name == ChatTemplateName(t)) return t;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown chat template \"", name, "\"; known: ", KnownChatTemplateNames()));
}

absl::StatusOr<std::string> RenderChat(ChatTemplate t, const std::vector<ChatMessage>& messages,
                                       bool add_generation_prompt, const ChatSpecialTokens& tokens) {
  KVCC_RETURN_IF_ERROR(CheckRoles(messages, t));
  switch (t) {
    case ChatTemplate::kLlama2: return RenderLlama2(messages, tokens);
    case ChatTemplate::kChatml: return RenderChatml(messages, add_generation_prompt);
    case ChatTemplate::kInternlm2: return tokens.bos + RenderChatml(messages, add_generation_prompt);
    case ChatTemplate::kInternlm: return RenderInternlm(messages, add_generation_prompt, tokens);
  }
  return absl::InternalError("unhandled chat template");
}

ChatFormat ChatFormat::Named(ChatTemplate t, ChatSpecialTokens tokens) {
  ChatFormat f;
  f.named_ = t;
  f.tokens_ = std::move(tokens);
  return f;
}

absl::StatusOr<ChatFormat> ChatFormat::FromJinja(absl::string_view source, const std::string& origin,
                                                 ChatSpecialTokens tokens) {
  KVCC_ASSIGN_OR_RETURN(jinja::Template t, jinja::Template::Parse(source, origin));
  ChatFormat f;
  f.jinja_ = std::make_shared<const jinja::Template>(std::move(t));
  f.origin_ = origin;
  f.tokens_ = std::move(tokens);
  return f;
}

absl::StatusOr<std::string> ChatFormat::Render(const std::vector<ChatMessage>& messages,
                                               bool add_generation_prompt) const {
  if (!jinja_) return RenderChat(named_, messages, add_generation_prompt, tokens_);
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const ChatMessage& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
  return RenderJson(list, nullptr, add_generation_prompt);
}

absl::StatusOr<std::string> ChatFormat::RenderJson(const nlohmann::ordered_json& messages,
                                                   const nlohmann::ordered_json& tools,
                                                   bool add_generation_prompt) const {
  if (!messages.is_array()) return absl::InvalidArgumentError("chat messages must be a JSON list");
  if (!jinja_) {
    std::vector<ChatMessage> plain;
    for (size_t i = 0; i < messages.size(); ++i) {
      const auto& m = messages[i];
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
          !m["content"].is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "chat message ", i, ": the named chat template ", ChatTemplateName(named_),
            " takes {\"role\": string, \"content\": string} messages"));
      }
      plain.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    }
    if (!tools.is_null()) {
      return absl::InvalidArgumentError(absl::StrCat("the named chat template ", ChatTemplateName(named_), " takes no tools"));
    }
    return RenderChat(named_, plain, add_generation_prompt, tokens_);
  }
  // The variables transformers' apply_chat_template passes.
  jinja::ValueDict globals = {{"messages", jinja::FromJson(messages)},
                              {"tools", jinja::FromJson(tools)},
                              {"documents", jinja::Value::None()},
                              {"add_generation_prompt", jinja::Value::Bool(add_generation_prompt)}};
  if (!tokens_.bos.empty()) globals.emplace_back("bos_token", jinja::Value::String(tokens_.bos));
  if (!tokens_.eos.empty()) globals.emplace_back("eos_token", jinja::Value::String(tokens_.eos));
  return jinja_->Render(globals);
}

std::string ChatFormat::Describe() const {
  if (jinja_) return absl::StrCat("the Jinja chat template of ", origin_);
  return absl::StrCat("the named chat template ", ChatTemplateName(named_));
}

}  // namespace kvcc::tokenizer
