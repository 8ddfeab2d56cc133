// Reads a Hugging Face config.json into the architecture-neutral ir::ModelConfig, for the
// LLaMA family kvcc supports (Llama, Mistral, Qwen2, InternLM, InternLM2). Anything the graph
// convention cannot express exactly is refused with the file, key and value named.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ir/model_config.h"

namespace kvcc::frontend {

inline constexpr char kHfConfigFileName[] = "config.json";

// Parses the text of a config.json; `file` names it in error messages.
absl::StatusOr<ir::ModelConfig> ParseHfConfig(absl::string_view json_text, absl::string_view file);

// Reads `path`, which is either a config.json file or a directory holding one.
absl::StatusOr<ir::ModelConfig> LoadHfConfig(const std::string& path);

}  // namespace kvcc::frontend
