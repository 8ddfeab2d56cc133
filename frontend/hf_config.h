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

// Whether the attention output projection carries a bias. HF's LLaMA `attention_bias`, InternLM's
// and InternLM2's `bias` put one on o_proj as well as q/k/v; Qwen2 biases only q/k/v. ModelConfig
// has only `qkv_bias`, so this is derived from the architecture.
bool HasOutputProjectionBias(const ir::ModelConfig& config);

// Parameter count implied by the config, including the o_proj biases that
// ModelConfig::NumParameters leaves out.
int64_t CountParameters(const ir::ModelConfig& config);

}  // namespace kvcc::frontend
