#include "tokenizer/chat_template.h"

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"
#include "tokenizer/unicode_category.h"
#include "tokenizer/utf8.h"

namespace kvcc::tokenizer {
namespace {

// Python's str.strip(): the Llama-2 template strips every message.
std::string PyStrip(absl::string_view s) {
  const std::u32string cps = ToCodePoints(s);
  auto space = [](char32_t c) { return IsUnicodeWhitespace(c) || (c >= 0x1C && c <= 0x1F); };
  size_t b = 0, e = cps.size();
  while (b < e && space(cps[b])) ++b;
  while (e > b && space(cps[e - 1])) --e;
  std::string out;
  for (size_t i = b; i < e; ++i) AppendUtf8(cps[i], &out);
  return out;
}

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

absl::StatusOr<ChatTemplate> DetectChatTemplate(absl::string_view jinja, const std::string& source) {
  auto has = [&](absl::string_view marker) { return jinja.find(marker) != absl::string_view::npos; };
  if (has("<|im_start|>")) {
    // InternLM2 writes bos_token before the ChatML turns; plain ChatML (Qwen) does not.
    return has("bos_token") ? ChatTemplate::kInternlm2 : ChatTemplate::kChatml;
  }
  if (has("<|User|>") && has("<|Bot|>")) return ChatTemplate::kInternlm;
  if (has("[INST]")) return ChatTemplate::kLlama2;
  return absl::InvalidArgumentError(absl::StrCat(
      source, ": chat_template is not one of the supported families (markers <|im_start|>, [INST], "
      "<|User|>); pass --chat-template with one of: ", KnownChatTemplateNames()));
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

}  // namespace kvcc::tokenizer
