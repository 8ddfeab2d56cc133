// The quantization_config of a pre-quantized checkpoint's config.json (AutoAWQ GEMM, GPTQ) and
// the --model-format that names the format a checkpoint is expected to be in.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ir/json_reader.h"

namespace kvcc::frontend {

// kAuto: whatever config.json's quantization_config says (kHf when it has none).
enum class ModelFormat { kAuto, kHf, kAwq, kGptq };

// "" (kAuto), "hf", "awq" or "gptq"; anything else is an error listing those.
absl::StatusOr<ModelFormat> ParseModelFormat(absl::string_view name);
absl::string_view ModelFormatName(ModelFormat format);

struct QuantizationConfig {
  ModelFormat format = ModelFormat::kHf;  // kHf: float weights, nothing else below applies
  int bits = 16;
  // Input features per scale/zero group; for GPTQ's group_size -1 (one group per row), 0 here
  // and the linear's input width at import.
  int64_t group_size = 0;
  bool zero_point = true;  // AWQ zero_point; GPTQ !sym
  bool zeros_minus_one = false;  // GPTQ v1 stores zero - 1 (checkpoint_format "gptq")
  // Modules left in 16 bits: a linear whose name contains any entry (AutoAWQ's matching).
  std::vector<std::string> modules_to_not_convert;

  bool quantized() const { return format == ModelFormat::kAwq || format == ModelFormat::kGptq; }
  // Whether the linear `module` ("model.layers.0.mlp.down_proj") holds quantized tensors.
  bool Converts(absl::string_view module) const;
  // The group size for a linear with `in` input features.
  int64_t GroupFor(int64_t in) const { return group_size > 0 ? group_size : in; }
};

// The quantization_config object of config.json `file` (absent or null: kHf). Supported:
// quant_method "awq" with version "gemm", bits 4 and zero_point true; quant_method "gptq" with
// bits 4, desc_act false, sym either way. Everything else is an error naming the key.
absl::StatusOr<QuantizationConfig> ParseQuantizationConfig(const ir::Json& config,
                                                           const std::string& file);

// Reads dir/config.json's quantization_config and reconciles it with `requested`: kAuto takes
// the config's; an explicit format must match it (asking for awq on a float checkpoint, or hf
// on an AWQ one, is an error saying what the checkpoint holds).
absl::StatusOr<QuantizationConfig> LoadQuantizationConfig(const std::string& dir,
                                                          ModelFormat requested);

}  // namespace kvcc::frontend
