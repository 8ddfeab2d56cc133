#include "tokenizer/tokenizer_loader.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "ir/json_reader.h"
#include "ir/status_macros.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/sentencepiece_tokenizer.h"
#include "tokenizer/tokenizer_files.h"
#include "nlohmann/json.hpp"

namespace kvcc::tokenizer {
namespace {

using json = ir::Json;

// bos_token and friends are either a string or an AddedToken object {"content": ...}.
absl::StatusOr<std::string> TokenText(const json& j, const char* key, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return std::string();
  const json& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return absl::InvalidArgumentError(absl::StrCat(source, ": \"", key, "\" must be a string or {\"content\": string}"));
}

absl::StatusOr<std::optional<bool>> OptionalBool(const json& j, const char* key, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return std::optional<bool>();
  if (!j[key].is_boolean()) return absl::InvalidArgumentError(absl::StrCat(source, ": \"", key, "\" must be true or false"));
  return std::optional<bool>(j[key].get<bool>());
}

}  // namespace

absl::StatusOr<TokenizerConfig> ParseTokenizerConfig(absl::string_view text, const std::string& source) {
  KVCC_ASSIGN_OR_RETURN(const json j, ir::ParseJson(text, source));
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(source, ": expected a JSON object"));
  TokenizerConfig c;
  KVCC_ASSIGN_OR_RETURN(auto bos, OptionalBool(j, "add_bos_token", source));
  c.add_bos_token = bos;
  KVCC_ASSIGN_OR_RETURN(auto eos, OptionalBool(j, "add_eos_token", source));
  c.add_eos_token = eos;
  KVCC_ASSIGN_OR_RETURN(auto bos_text, TokenText(j, "bos_token", source));
  c.bos_token = bos_text;
  KVCC_ASSIGN_OR_RETURN(auto eos_text, TokenText(j, "eos_token", source));
  c.eos_token = eos_text;
  if (j.contains("tokenizer_class") && j["tokenizer_class"].is_string()) c.tokenizer_class = j["tokenizer_class"].get<std::string>();
  if (j.contains("chat_template") && !j["chat_template"].is_null()) {
    const json& t = j["chat_template"];
    if (t.is_string()) {
      c.chat_template = t.get<std::string>();
    } else if (t.is_array()) {  // newer form: [{"name": "default", "template": ...}, ...]
      for (const json& entry : t) {
        if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
            entry["template"].is_string()) {
          c.chat_template = entry["template"].get<std::string>();
        }
      }
      if (c.chat_template.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(source, ": chat_template list has no \"default\" entry"));
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat(source, ": chat_template must be a string or a list"));
    }
  }
  return c;
}

absl::StatusOr<LoadedTokenizer> LoadTokenizer(const std::string& model_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(model_dir, ec)) {
    return absl::NotFoundError(absl::StrCat("model directory ", model_dir, " does not exist"));
  }
  LoadedTokenizer out;
  const std::string config_path = (fs::path(model_dir) / "tokenizer_config.json").string();
  if (fs::exists(config_path, ec)) {
    KVCC_ASSIGN_OR_RETURN(auto text, ReadTokenizerFile(config_path));
    auto config = ParseTokenizerConfig(text, config_path);
    if (!config.ok()) return config.status();
    out.config = std::move(*config);
    out.config_file = config_path;
  }
  const std::string json_path = (fs::path(model_dir) / "tokenizer.json").string();
  const std::string model_path = (fs::path(model_dir) / "tokenizer.model").string();
  if (fs::exists(json_path, ec)) {
    auto tok = HfTokenizer::FromFile(json_path);
    if (!tok.ok()) return tok.status();
    // As transformers' LlamaTokenizerFast does, explicit add_bos/add_eos flags rebuild the
    // post-processor's BOS/EOS.
    auto bos = out.config.bos_token.empty() ? std::nullopt : (*tok)->PieceToId(out.config.bos_token);
    auto eos = out.config.eos_token.empty() ? std::nullopt : (*tok)->PieceToId(out.config.eos_token);
    if (!out.config.bos_token.empty() && !bos) {
      return absl::InvalidArgumentError(absl::StrCat(config_path, ": bos_token \"", out.config.bos_token, "\" is not in ", json_path));
    }
    if (!out.config.eos_token.empty() && !eos) {
      return absl::InvalidArgumentError(absl::StrCat(config_path, ": eos_token \"", out.config.eos_token, "\" is not in ", json_path));
    }
    if (bos) (*tok)->set_bos_id(*bos);
    if (eos) (*tok)->set_eos_id(*eos);
    if (auto s = (*tok)->SetSpecialAffixes(out.config.add_bos_token, out.config.add_eos_token); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(config_path, ": ", s.message()));
    }
    out.tokenizer = std::move(*tok);
    out.tokenizer_file = json_path;
  } else if (fs::exists(model_path, ec)) {
    KVCC_ASSIGN_OR_RETURN(auto tok, SentencePieceTokenizer::FromFile(model_path));
    tok->set_add_bos(out.config.add_bos_token.value_or(true));
    tok->set_add_eos(out.config.add_eos_token.value_or(false));
    if (!out.config.bos_token.empty()) {
      auto id = tok->PieceToId(out.config.bos_token);
      if (!id) return absl::InvalidArgumentError(absl::StrCat(config_path, ": bos_token \"", out.config.bos_token, "\" is not in ", model_path));
      tok->set_bos_id(*id);
    }
    if (!out.config.eos_token.empty()) {
      auto id = tok->PieceToId(out.config.eos_token);
      if (!id) return absl::InvalidArgumentError(absl::StrCat(config_path, ": eos_token \"", out.config.eos_token, "\" is not in ", model_path));
      tok->set_eos_id(*id);
    }
    out.tokenizer = std::move(tok);
    out.tokenizer_file = model_path;
  } else {
    return absl::NotFoundError(absl::StrCat("no tokenizer in ", model_dir,
                                            ": expected tokenizer.json or tokenizer.model"));
  }
  const Tokenizer& t = *out.tokenizer;
  out.chat_tokens.bos = t.bos_id() >= 0 ? *t.IdToPiece(t.bos_id()) : "";
  out.chat_tokens.eos = t.eos_id() >= 0 ? *t.IdToPiece(t.eos_id()) : "";
  const std::string jinja_path = (fs::path(model_dir) / "chat_template.jinja").string();
  if (fs::exists(jinja_path, ec)) {
    KVCC_ASSIGN_OR_RETURN(auto text, ReadTokenizerFile(jinja_path));
    out.chat_template = std::move(text);
    out.chat_template_file = jinja_path;
  } else if (!out.config.chat_template.empty()) {
    out.chat_template = out.config.chat_template;
    out.chat_template_file = out.config_file;
  }
  return out;
}

absl::StatusOr<ChatFormat> ResolveChatTemplate(const LoadedTokenizer& loaded,
                                               const std::string& override_name) {
  if (!override_name.empty()) {
    KVCC_ASSIGN_OR_RETURN(ChatTemplate named, ChatTemplateByName(override_name));
    return ChatFormat::Named(named, loaded.chat_tokens);
  }
  if (loaded.chat_template_file.empty()) {
    const std::string where = loaded.config_file.empty()
                                  ? "the model directory has no tokenizer_config.json or chat_template.jinja"
                                  : absl::StrCat(loaded.config_file, " has no chat_template and there is no chat_template.jinja");
    return absl::NotFoundError(absl::StrCat(where, "; pass --chat-template with one of: ", KnownChatTemplateNames()));
  }
  auto format = ChatFormat::FromJinja(loaded.chat_template, loaded.chat_template_file, loaded.chat_tokens);
  if (!format.ok()) {
    return absl::Status(format.status().code(),
                        absl::StrCat(format.status().message(), " (pass --chat-template with one of ",
                                     KnownChatTemplateNames(), " to use a named format instead)"));
  }
  return format;
}

}  // namespace kvcc::tokenizer
