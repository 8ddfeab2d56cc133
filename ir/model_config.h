// Architecture-neutral hyperparameters of a LLaMA-family decoder, as the importer read them
// from config.json; stored in the artifact so tools need not re-read the checkpoint.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/dtype.h"

namespace kvcc::ir {

struct RopeScaling {
  std::string type = "none";  // none | linear | dynamic | llama3
  double factor = 1.0;
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  int64_t original_max_position = 0;  // llama3, dynamic
};

struct ModelConfig {
  std::string architecture;  // e.g. "LlamaForCausalLM"
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  int64_t max_position = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_embeddings = false;
  bool qkv_bias = false;
  // Bias on the attention output projection: LLaMA's attention_bias and InternLM/InternLM2's
  // bias put one there as well as on q/k/v; Qwen2 biases only q/k/v.
  bool o_bias = false;
  int64_t bos_token_id = -1;
  // Generation stops at any of them (config.json's eos_token_id, an id or a list).
  std::vector<int64_t> eos_token_ids;
  DType weight_dtype = DType::kF16;  // torch_dtype of the checkpoint
  // What the importer did not understand in config.json and ignored, one line each; shown by
  // `kvcc inspect` and `kvcc import`, not stored in the artifact.
  std::vector<std::string> warnings;

  // Parameter count implied by the shapes (embedding counted once when tied).
  int64_t NumParameters() const;
  // KV-cache bytes one session of `tokens` tokens needs with the given element dtype
  // (K and V, all layers; sub-byte dtypes packed).
  int64_t KvBytesPerSession(int64_t tokens, DType cache_dtype) const;

  // indent < 0 gives one line (the printer's form).
  std::string ToJson(int indent = 1) const;
  static absl::StatusOr<ModelConfig> FromJson(const std::string& json);
};

}  // namespace kvcc::ir
