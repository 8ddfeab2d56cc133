// What `kvcc generate`, `chat` and `ppl` share: a model path opened into an engine (with the
// KV-cache scheme the flags select), its tokenizer, and sampling settings from the flags.
// Header-only so the commands need nothing beyond their own cmd_*.cc files.
#pragma once

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "frontend/model_loader.h"
#include "frontend/tokenizer_loader.h"
#include "passes/execution_fusions.h"
#include "passes/kv_quant_flags.h"
#include "runtime/backend.h"
#include "runtime/kv_pool_budget.h"
#include "runtime/engine.h"
#include "runtime/sampler.h"
#include "tools/cli_support.h"
#include "tools/flags.h"

namespace kvcc::tools {

struct TextModel {
  std::unique_ptr<runtime::Engine> engine;
  frontend::LoadedTokenizer tokenizer;
  std::vector<int32_t> stop_tokens;  // EOS of the tokenizer and of the model config
};

// Opens `path` (HF checkpoint or artifact) on --device with the --quant-policy / --kv-quant
// cache and the execution fusions (passes/execution_fusions.h); sessions are limited to
// min(--max-len, the model's context); `sessions` sizes the cache pool. `full_precision_cache` keeps unquantized layers in f32 (--cache-dtype f32).
inline absl::StatusOr<TextModel> OpenTextModel(const std::string& path, int sessions) {
  auto module = frontend::LoadModel(path);
  if (!module.ok()) return module.status();
  auto scheme = passes::ApplyKvQuantFromFlags(**module, path, absl::GetFlag(FLAGS_quant_policy),
                                              absl::GetFlag(FLAGS_kv_quant),
                                              absl::GetFlag(FLAGS_kv_params));
  if (!scheme.ok()) return scheme.status();
  if (auto s = passes::ApplyExecutionFusions(**module); !s.ok()) return s;
  auto tok_dir = frontend::FindTokenizerDir(path);
  if (!tok_dir.ok()) return tok_dir.status();
  auto tok = frontend::LoadTokenizer(*tok_dir);
  if (!tok.ok()) return tok.status();
  const std::string cache_dtype = absl::GetFlag(FLAGS_cache_dtype);
  if (!cache_dtype.empty() && cache_dtype != "f16" && cache_dtype != "f32") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--cache-dtype ", cache_dtype, ": generation takes f16 or f32 here; quantized caches "
        "come from --quant-policy / --kv-quant"));
  }
  const std::string device = DeviceFromFlags();
  auto backend = runtime::CreateBackend(device);
  if (!backend.ok()) return backend.status();
  const int64_t max_len = absl::GetFlag(FLAGS_max_len);
  if (max_len <= 0) return absl::InvalidArgumentError("--max-len must be positive");
  const int64_t model_ctx = (*module)->config.max_position > 0 ? (*module)->config.max_position
                                                               : max_len;
  runtime::EngineOptions options;
  options.max_context = std::min(max_len, model_ctx);
  options.default_sessions = std::max(1, sessions);
  options.full_precision_cache = cache_dtype == "f32";
  if (device == "cuda") {
    // As LMDeploy: the pool takes --cache-max-entry-count of the memory left after weights.
    auto budget = runtime::KvPoolFromDeviceMemory(**module,
                                                  absl::GetFlag(FLAGS_cache_max_entry_count),
                                                  options.block_size);
    if (!budget.ok()) return budget.status();
    options.cache_tokens = budget->tokens;
  }
  TextModel m;
  const int64_t config_eos = (*module)->config.eos_token_id;
  auto engine = runtime::Engine::Create(std::shared_ptr<const ir::Module>(std::move(*module)),
                                        std::move(*backend), options);
  if (!engine.ok()) return engine.status();
  m.engine = *std::move(engine);
  m.tokenizer = *std::move(tok);
  if (m.tokenizer.tokenizer->eos_id() >= 0) m.stop_tokens.push_back(m.tokenizer.tokenizer->eos_id());
  if (config_eos >= 0 && config_eos != m.tokenizer.tokenizer->eos_id()) {
    m.stop_tokens.push_back(static_cast<int32_t>(config_eos));
  }
  return m;
}

inline absl::StatusOr<runtime::SamplingParams> SamplingFromFlags() {
  runtime::SamplingParams p;
  p.temperature = absl::GetFlag(FLAGS_temperature);
  p.top_k = absl::GetFlag(FLAGS_top_k);
  p.top_p = absl::GetFlag(FLAGS_top_p);
  p.repetition_penalty = absl::GetFlag(FLAGS_repetition_penalty);
  p.seed = static_cast<uint64_t>(absl::GetFlag(FLAGS_seed));
  if (auto s = p.Validate(); !s.ok()) return s;
  return p;
}

}  // namespace kvcc::tools
