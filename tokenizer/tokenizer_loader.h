// Finds and loads a model directory's tokenizer: tokenizer.json (preferred) or tokenizer.model,
// with tokenizer_config.json applied (add_bos_token / add_eos_token, bos/eos tokens), and the
// model's Jinja chat template (chat_template.jinja, else tokenizer_config.json's chat_template).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace kvcc::tokenizer {

// The parts of tokenizer_config.json the loader uses.
struct TokenizerConfig {
  std::optional<bool> add_bos_token;
  std::optional<bool> add_eos_token;
  std::string bos_token;      // empty when absent
  std::string eos_token;
  std::string chat_template;  // Jinja source, empty when absent
  std::string tokenizer_class;
};

// Parses tokenizer_config.json text; `source` is named in errors.
absl::StatusOr<TokenizerConfig> ParseTokenizerConfig(absl::string_view json_text,
                                                     const std::string& source);

struct LoadedTokenizer {
  std::unique_ptr<Tokenizer> tokenizer;
  std::string tokenizer_file;  // the tokenizer.json or tokenizer.model that was loaded
  std::string config_file;     // tokenizer_config.json, empty if the directory has none
  TokenizerConfig config;
  ChatSpecialTokens chat_tokens;  // BOS/EOS text for chat templates ("" where there is none)
  // The model's Jinja chat template and the file it came from: chat_template.jinja beside the
  // config when present (it takes precedence, as in transformers), else the config's.
  std::string chat_template;
  std::string chat_template_file;
};

absl::StatusOr<LoadedTokenizer> LoadTokenizer(const std::string& model_dir);

// The chat format to use: the named one `override_name` (--chat-template) if non-empty, else
// the model's own Jinja template; an error names the files looked at and suggests
// --chat-template when the model has none.
absl::StatusOr<ChatFormat> ResolveChatTemplate(const LoadedTokenizer& loaded,
                                               const std::string& override_name);

}  // namespace kvcc::tokenizer
