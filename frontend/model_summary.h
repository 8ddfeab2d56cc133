// What `kvcc inspect` reports about a model: shape, parameter and weight-byte counts, the
// KV-cache scheme, and KV-cache bytes per session at each cache dtype. Works from an artifact, a
// checkpoint, or a config.json alone (weight bytes are then those implied by torch_dtype).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "frontend/generation_config.h"
#include "ir/dtype.h"
#include "ir/model_config.h"
#include "ir/module.h"

namespace kvcc::frontend {

struct ModelSummary {
  std::string source;       // the path inspected
  std::string source_kind;  // "kvcc artifact", "hf checkpoint" or "config.json only"
  ir::ModelConfig config;
  int64_t parameters = 0;
  // Bytes per weight dtype: actual tensors when weights were read, else the config's parameter
  // count at torch_dtype.
  bool weights_read = false;
  std::map<ir::DType, int64_t> weight_bytes;
  std::string kv_scheme;               // e.g. "f16 (none)", "i8 (per_layer)"
  ir::DType kv_dtype = ir::DType::kF16;  // the cache dtype the model is set up with
  std::optional<GenerationConfig> generation;  // generation_config.json, when there is one
};

// Summarizes a path: an artifact dir, a checkpoint dir (imported, so shapes are checked), a
// directory holding only config.json (or no safetensors), or a config.json file; with the
// generation_config.json beside it.
absl::StatusOr<ModelSummary> SummarizeModel(const std::string& path);

// The summary of a module already loaded.
absl::StatusOr<ModelSummary> SummarizeModule(const ir::Module& module, const std::string& source,
                                             const std::string& source_kind);

// The inspect report. `cache_dtype` (f16, i8 or i4) is marked among the KV-cache sizes; when
// unset the model's own cache dtype is.
absl::StatusOr<std::string> FormatModelSummary(const ModelSummary& summary, int64_t max_len,
                                               std::optional<ir::DType> cache_dtype);

// "1 GiB", "0.5 GiB", "1.25 MiB", "12 KiB", "100 B": two decimals at most, trailing zeros
// dropped; a unit is used from half of it upwards.
std::string FormatBytes(int64_t bytes);

}  // namespace kvcc::frontend
