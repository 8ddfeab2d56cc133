// Reads a Hugging Face config.json into the architecture-neutral ir::ModelConfig, for the
// LLaMA family kvcc supports (Llama, Mistral, Qwen2, InternLM, InternLM2), in the layouts of
// transformers 4 and 5. Anything the graph convention cannot express exactly is refused with
// the file, key and value named; keys it does not know are returned as warnings.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ir/json_reader.h"
#include "ir/model_config.h"

namespace kvcc::frontend {

inline constexpr char kHfConfigFileName[] = "config.json";

// Parses the text of a config.json; `file` names it in error messages. Keys that are neither
// read, known to be harmless, nor refused come back in ModelConfig::warnings, one each.
absl::StatusOr<ir::ModelConfig> ParseHfConfig(absl::string_view json_text, absl::string_view file);

// Reads `path`, which is either a config.json file or a directory holding one.
absl::StatusOr<ir::ModelConfig> LoadHfConfig(const std::string& path);

// A token id or a list of them under `key` (absent or null: none), each in [0, vocab);
// duplicates are dropped, order kept. Shared with generation_config.json.
absl::StatusOr<std::vector<int64_t>> ReadTokenIds(const ir::JsonReader& r, const char* key,
                                                  int64_t vocab);

}  // namespace kvcc::frontend
