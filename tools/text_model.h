// What `kvcc generate`, `chat` and `ppl` share: the shared flags mapped onto the pipeline's
// options (pipeline/model_opener.h), and sampling settings from the flags or, when none is
// given, from the model's generation_config.json.
// Header-only so the commands need nothing beyond their own cmd_*.cc files.
#pragma once

#include <cstdint>
#include <iostream>
#include <limits>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/commandlineflag.h"
#include "absl/flags/internal/private_handle_accessor.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "frontend/generation_config.h"
#include "ir/status_macros.h"
#include "pipeline/model_opener.h"
#include "runtime/sampler.h"
#include "tools/cli_support.h"
#include "tools/flags.h"

namespace kvcc::tools {

// The lowering the shared flags select (--quant-policy, --kv-quant, --kv-params,
// --kv-quant-part, --dump-after to stderr).
inline pipeline::LowerOptions LowerOptionsFromFlags() {
  pipeline::LowerOptions lower;
  lower.model_format = absl::GetFlag(FLAGS_model_format);
  lower.quant_policy = absl::GetFlag(FLAGS_quant_policy);
  lower.kv_quant = absl::GetFlag(FLAGS_kv_quant);
  lower.kv_params = absl::GetFlag(FLAGS_kv_params);
  lower.kv_quant_part = absl::GetFlag(FLAGS_kv_quant_part);
  lower.dump_after = absl::GetFlag(FLAGS_dump_after);
  if (!lower.dump_after.empty()) lower.dump = &std::cerr;
  return lower;
}

// `path` opened with the flags' cache scheme on --device; sessions get min(--max-len, the
// model's context); `sessions` sizes the CPU pool, --cache-max-entry-count the GPU's.
inline absl::StatusOr<pipeline::OpenedModel> OpenTextModel(const std::string& path,
                                                           int sessions) {
  const std::string cache_dtype = absl::GetFlag(FLAGS_cache_dtype);
  if (!cache_dtype.empty() && cache_dtype != "f16" && cache_dtype != "f32") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--cache-dtype ", cache_dtype, ": generation takes f16 or f32 here; quantized caches "
        "come from --quant-policy / --kv-quant"));
  }
  pipeline::OpenOptions options;
  options.model_path = path;
  options.lower = LowerOptionsFromFlags();
  // "" (no --device) lets OpenModel look for the GPU after the files are read.
  options.engine.device = absl::GetFlag(FLAGS_device);
  options.engine.max_len = absl::GetFlag(FLAGS_max_len);
  options.engine.sessions = sessions;
  options.engine.cache_max_entry_count = absl::GetFlag(FLAGS_cache_max_entry_count);
  options.engine.full_precision_cache = cache_dtype == "f32";
  options.engine.no_jit = absl::GetFlag(FLAGS_no_jit);
  return pipeline::OpenModel(options);
}

// Whether the user gave `flag`, even at its default value (`--temperature 0` asks for greedy).
// Debian's Abseil keeps CommandLineFlag::IsSpecifiedOnCommandLine private (newer releases make
// it public), so it is reached through the accessor Abseil's own parser uses.
inline bool SpecifiedOnCommandLine(const absl::CommandLineFlag& flag) {
  return absl::flags_internal::PrivateHandleAccessor::IsSpecifiedOnCommandLine(flag);
}

// The model's sampling defaults as transformers applies them: greedy unless do_sample is true;
// when sampling, temperature 1, top_k 50 and top_p 1 where the file leaves them unset. The
// repetition penalty applies either way.
inline void ApplyGenerationDefaults(const frontend::GenerationConfig& g,
                                    runtime::SamplingParams* p) {
  if (g.do_sample.value_or(false)) {
    p->temperature = g.temperature.value_or(1.0);
    p->top_k = static_cast<int>(g.top_k.value_or(50));
    p->top_p = g.top_p.value_or(1.0);
  }
  if (g.repetition_penalty.has_value()) p->repetition_penalty = *g.repetition_penalty;
}

// Sampling settings from the flags. When the user gives none of --temperature, --top-k, --top-p
// and --repetition-penalty, the defaults of `model_path`'s generation_config.json (if any) are
// used instead, as transformers and vLLM do. An empty `model_path` means the flags alone.
inline absl::StatusOr<runtime::SamplingParams> SamplingFromFlags(
    const std::string& model_path = "") {
  runtime::SamplingParams p;
  p.temperature = absl::GetFlag(FLAGS_temperature);
  p.top_k = absl::GetFlag(FLAGS_top_k);
  p.top_p = absl::GetFlag(FLAGS_top_p);
  p.repetition_penalty = absl::GetFlag(FLAGS_repetition_penalty);
  p.seed = static_cast<uint64_t>(absl::GetFlag(FLAGS_seed));
  const bool any_flag = SpecifiedOnCommandLine(absl::GetFlagReflectionHandle(FLAGS_temperature)) ||
                        SpecifiedOnCommandLine(absl::GetFlagReflectionHandle(FLAGS_top_k)) ||
                        SpecifiedOnCommandLine(absl::GetFlagReflectionHandle(FLAGS_top_p)) ||
                        SpecifiedOnCommandLine(
                            absl::GetFlagReflectionHandle(FLAGS_repetition_penalty));
  if (!any_flag && !model_path.empty()) {
    // The vocabulary is not known before the model is opened; OpenModel checks the eos ids
    // against it, sampling needs none of them.
    KVCC_ASSIGN_OR_RETURN(
        std::optional<frontend::GenerationConfig> generation,
        frontend::LoadGenerationConfig(model_path, std::numeric_limits<int32_t>::max()));
    if (generation.has_value()) ApplyGenerationDefaults(*generation, &p);
  }
  KVCC_RETURN_IF_ERROR(p.Validate());
  return p;
}

}  // namespace kvcc::tools
