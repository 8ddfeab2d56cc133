// The one entry point that opens a model for execution: load (frontend), lower (KV-cache
// quantization and fusions through the pass registry), start a backend and an engine (runtime),
// and load the tokenizer with the stop tokens. Every command, the calibrator and kv-compare
// open models through these functions, so they all run the same graph.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/module.h"
#include "passes/kv_quant_scheme.h"
#include "pipeline/open_options.h"
#include "runtime/cuda/kernel_plan.h"
#include "runtime/engine.h"
#include "tokenizer/tokenizer_loader.h"

namespace kvcc::pipeline {

// Applies the cache scheme `options` select (kv-calibrate + kv-quantize when calibrated, reading
// the parameter file; a missing file is an error telling to run `kvcc calibrate`), then the
// execution fusions. `model_dir` locates the default kv_params.json. Returns the scheme applied.
// A graph `kvcc compile` lowered runs no pass: its scheme is returned, and options asking for
// another scheme or for parameters are an error.
absl::StatusOr<passes::KvQuantScheme> LowerForExecution(ir::Module& module,
                                                        const std::string& model_dir,
                                                        const LowerOptions& options);

// frontend::LoadModel after CheckCompiledArtifact (compiled_artifact.h); `model_format` as
// LowerOptions::model_format ("" detects it).
absl::StatusOr<std::unique_ptr<ir::Module>> LoadModelChecked(const std::string& path,
                                                            const std::string& model_format = "");

// Loads `path` (checkpoint or artifact) and lowers it.
absl::StatusOr<std::unique_ptr<ir::Module>> LoadForExecution(const std::string& path,
                                                             const LowerOptions& options);

// The context a session gets: min(config.max_len, the model's context); an error for a
// non-positive max_len.
absl::StatusOr<int64_t> SessionContext(const ir::Module& module, const EngineConfig& config);

// A backend for config.device (CUDA kernels from `kernels`: an artifact's, or by default the
// kernel cache) and an engine over `module` with the pool `config` sizes.
absl::StatusOr<std::unique_ptr<runtime::Engine>> StartEngine(
    std::shared_ptr<const ir::Module> module, const EngineConfig& config,
    runtime::CudaKernelSource kernels = {});

struct OpenedModel {
  std::unique_ptr<runtime::Engine> engine;
  passes::KvQuantScheme kv_scheme = passes::KvQuantScheme::kNone;
  std::optional<tokenizer::LoadedTokenizer> tokenizer;  // when OpenOptions::tokenizer
  std::vector<int32_t> stop_tokens;  // EOS of the tokenizer and of the model config
};

// All of the above, plus the tokenizer when asked for.
absl::StatusOr<OpenedModel> OpenModel(const OpenOptions& options);

// Waits for the library loads OpenModel started on a GPU host (cuBLASLt's load and warm-up on
// their own thread). kvcc's main calls it before returning: a process that exits while
// libcublasLt is still loading or warming up crashes in the library's exit handlers (seen on
// the H200 once a stories260K start had become faster than the load).
void AwaitGpuPrewarm();

}  // namespace kvcc::pipeline
