// Synthesizes Hugging Face-format checkpoints (config.json + safetensors) with seeded random
// weights at a config's exact shapes, so that importer, runtime and benchmarks can run on
// realistic model sizes where real weights cannot be downloaded. Tensor names and shapes follow
// each architecture's Hugging Face modeling code, independently of the importer, so importing
// a synth checkpoint also cross-checks the importer's naming.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ir/dtype.h"

namespace kvcc::testing {

// One tensor of the checkpoint and the normal distribution its values are drawn from. The
// scales keep a random model's activations sane: linears N(0, 1/fan_in) preserve the RMS of
// their input, norms sit near 1, untied embeddings are N(0, 1), and the output projection
// (or a tied embedding) gives logits a standard deviation of about 2.
//
// InternLM2 tensors draw their values from their LLaMA counterparts' streams (seed_name), and
// wqkv interleaves separately drawn q, k and v parts the way InternLM2 lays them out, so an
// InternLM2 synth checkpoint holds exactly the model of the LLaMA synth checkpoint with the same
// shapes and seed: importers can be checked against each other.
struct SynthTensor {
  std::string name;
  std::vector<int64_t> shape;
  float mean = 0.0f;
  float stddev = 1.0f;
  std::string seed_name;  // whose random stream the values come from; empty: `name`

  // InternLM2's fused wqkv (weight or bias): rows grouped per KV head as
  // [group q heads of the query part, that head of the key part, that head of the value part],
  // each head `head_dim` rows; the parts are drawn as tensors named q/k/v_seed_name.
  struct FusedQkv {
    std::string q_seed_name, k_seed_name, v_seed_name;
    int64_t kv_heads = 0, group = 0, head_dim = 0;
  };
  std::optional<FusedQkv> fused;
};

// The architecture and the shapes synth read from a config.json.
struct SynthPlan {
  std::string architecture;
  ir::DType config_dtype = ir::DType::kF16;  // torch_dtype, when f16/bf16/f32; else f16
  std::vector<SynthTensor> tensors;  // in model order: embedding, layers, final norm, head
};

// Tensors HF's modeling code declares for this config (LlamaForCausalLM, MistralForCausalLM,
// Qwen2ForCausalLM, InternLM2ForCausalLM, InternLMForCausalLM). Errors name `file` and the key.
absl::StatusOr<SynthPlan> PlanSynthCheckpoint(absl::string_view config_json,
                                              absl::string_view file);

struct SynthOptions {
  uint64_t seed = 0;
  // f16, bf16 or f32; unset: the config's torch_dtype when it names one of those, else f16.
  std::optional<ir::DType> dtype;
  // Checkpoints larger than this are split into model-0000k-of-0000n.safetensors shards with a
  // model.safetensors.index.json, as save_pretrained does; a single tensor larger than this
  // gets a shard of its own.
  uint64_t shard_bytes = uint64_t{2} << 30;
  int threads = 0;  // 0: one per hardware thread. The output does not depend on it.
};

struct SynthResult {
  SynthPlan plan;
  ir::DType dtype = ir::DType::kF16;  // what was written
  std::vector<std::string> files;  // safetensors files written, in order
  uint64_t weight_bytes = 0;
};

// Values of `tensor` for `seed`, converted to `dtype` and stored little-endian into `out`
// (which must hold exactly the tensor's bytes). Deterministic in (seed, tensor name, shape):
// the values are drawn in fixed blocks, each with its own generator, so any thread count gives
// the same bytes.
absl::Status FillSynthTensor(const SynthTensor& tensor, uint64_t seed, ir::DType dtype,
                             uint8_t* out, uint64_t out_size, int threads);

// Reads the config at `config_path`, writes `out_dir`/config.json (the input with torch_dtype
// set to the generated dtype) and the safetensors weights. Every file is written atomically;
// stale weight files of an earlier synth run in `out_dir` are removed.
absl::StatusOr<SynthResult> SynthesizeCheckpoint(const std::string& config_path,
                                                 const std::string& out_dir,
                                                 const SynthOptions& options);

}  // namespace kvcc::testing
