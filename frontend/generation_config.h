// The model's own generation defaults from the generation_config.json beside config.json (or
// copied into an artifact by `kvcc import`): stop tokens and sampling settings, which kvcc
// applies when the user gives no sampling flag, as transformers and vLLM do.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvcc::frontend {

inline constexpr char kGenerationConfigFileName[] = "generation_config.json";

struct GenerationConfig {
  std::string file;  // where it was read from
  std::vector<int64_t> eos_token_ids;
  std::optional<bool> do_sample;  // transformers samples only when true
  std::optional<double> temperature;
  std::optional<int64_t> top_k;
  std::optional<double> top_p;
  std::optional<double> repetition_penalty;
};

// Parses the text of a generation_config.json; eos ids must lie in [0, vocab). Values are
// range-checked as the sampler needs them; `file` names it in errors.
absl::StatusOr<GenerationConfig> ParseGenerationConfig(absl::string_view json_text,
                                                       absl::string_view file, int64_t vocab);

// dir/generation_config.json when `model_path` is a directory, else the one beside the file;
// nullopt when there is none.
absl::StatusOr<std::optional<GenerationConfig>> LoadGenerationConfig(const std::string& model_path,
                                                                     int64_t vocab);

}  // namespace kvcc::frontend
