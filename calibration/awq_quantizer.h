// `kvcc lite auto-awq`: activation-aware 4-bit weight quantization (AWQ, Lin et al. 2023, as
// AutoAWQ implements it) of a float LLaMA-family checkpoint into AutoAWQ-GEMM tensors, and
// plain round-to-nearest (RTN) for comparison.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "frontend/safetensors.h"
#include "ir/json_reader.h"

namespace kvcc::calibration {

struct AwqOptions {
  int w_bits = 4;
  int64_t group_size = 128;
  // Per layer group (input_layernorm -> q,k,v; v -> o when shapes allow; post_attention_layernorm
  // -> gate,up; up -> down) the scale exponent of a n_grid-point grid (or no scaling) with the
  // least error of the block the group feeds (the attention block's output for q,k,v, the
  // MLP's for gate,up, the linear's own for o and down), folded into the preceding norm or
  // linear; then the clipping search (not for q, k).
  bool search_scale = true;
  int n_grid = 20;
  // Tokens (whole calibration windows, the first ones) on which the scale search measures
  // each group's block output; the clipping search takes 512 rows spread over them, and the
  // activation means use every token.
  int64_t search_tokens = 4096;
  // AutoAWQ's weight clipping search (apply_clip), on up to clip_tokens of those rows (AutoAWQ
  // samples 512; more measured better on wiki-gutenberg-29M, docs/awq.md).
  bool apply_clip = true;
  int64_t clip_tokens = 4096;
  bool rtn = false;  // plain round-to-nearest: no statistics, no search
  std::string device = "cpu";
  int threads = 0;
  // (steps done, steps total, what): one step per calibration window, then per layer group.
  std::function<void(int64_t, int64_t, const std::string&)> progress;
};

struct AwqResult {
  // Every tensor of the output checkpoint in order: float ones (norms folded) in f16, converted
  // linears as qweight/qzeros/scales.
  std::vector<frontend::SafetensorsTensor> tensors;
  // Linears kept in 16 bits because the group size does not divide their input width.
  std::vector<std::string> not_converted;
  int64_t converted = 0;
};

// The config.json of the AutoAWQ-GEMM checkpoint: `source` (the float model's config.json)
// with AutoAWQ's quantization_config for `result` and torch_dtype float16.
ir::Json AwqCheckpointConfig(ir::Json source, const AwqResult& result, int64_t group_size);

// Quantizes the float checkpoint at `model_dir`. `windows` (token windows of calibration text)
// are needed unless options.rtn. Errors name the tensor or layer.
absl::StatusOr<AwqResult> QuantizeAwq(const std::string& model_dir,
                                      const std::vector<std::vector<int32_t>>& windows,
                                      const AwqOptions& options);

}  // namespace kvcc::calibration
