// The plain options every way of running a model shares: how the graph is lowered (KV-cache
// scheme, fusions) and how the engine is started (device, context, cache pool). Commands map
// their flags onto these; nothing below tools/ reads a flag.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

namespace kvcc::pipeline {

struct LowerOptions {
  // How a checkpoint's weights are stored: "awq", "gptq", "hf"; "" detects it from config.json
  // (frontend/quantization_config.h). Read when the model is loaded, before lowering.
  std::string model_format;
  int quant_policy = 0;   // 0: fp16 cache; 4: the seed's int8 per-layer
  std::string kv_quant;   // a scheme name (passes/kv_quant_scheme.h); "" follows quant_policy
  std::string kv_params;  // calibration file; "" reads kv_params.json beside the model
  // "k" or "v": the scheme quantizes that part alone, the other stays fp16 (a diagnostic for
  // kvcompare and ppl; a compiled artifact refuses it). "": both parts.
  std::string kv_quant_part;
  bool fusions = true;    // qkv/gate-up merge and residual add + RMSNorm (execution fusions)
  // With `dump` set, ir::Print of the module follows the pass named `dump_after`.
  std::ostream* dump = nullptr;
  std::string dump_after;
};

struct EngineConfig {
  // "cpu" | "cuda" | "" (OpenModel: cuda when a GPU is present, decided after the files are
  // read so the driver's start overlaps them)
  std::string device = "cpu";
  int threads = 0;             // CPU backend threads; <= 0: every core
  int64_t max_len = 2048;      // context per session, capped at the model's own
  int sessions = 1;            // CPU pool: room for this many full-context sessions
  // CUDA pool: this fraction of the memory left once the weights are on the device (LMDeploy's
  // --cache-max-entry-count). Ignored when `cache_tokens` is set.
  double cache_max_entry_count = 0.8;
  int64_t cache_tokens = 0;  // explicit pool size in tokens; 0: sized as above
  bool full_precision_cache = false;  // unquantized layers in f32 instead of f16
  // A compiled artifact's kernels only: an arch or kernel missing from it is an error instead
  // of an NVRTC compile (`--no-jit`).
  bool no_jit = false;
};

struct OpenOptions {
  std::string model_path;  // a Hugging Face checkpoint or a kvcc artifact
  LowerOptions lower;
  EngineConfig engine;
  bool tokenizer = true;  // also load the model's tokenizer
};

}  // namespace kvcc::pipeline
