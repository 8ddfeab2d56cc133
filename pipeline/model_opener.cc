#include "pipeline/model_opener.h"

#include <algorithm>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "codegen/nvrtc_library.h"
#include "frontend/generation_config.h"
#include "frontend/model_loader.h"
#include "ir/onnx_io.h"
#include "ir/startup_marks.h"
#include "ir/status_macros.h"
#include "passes/execution_fusions.h"
#include "passes/kv_params.h"
#include "passes/pass_manager.h"
#include "passes/pass_registry.h"
#include "pipeline/compiled_artifact.h"
#include "pipeline/compiled_manifest.h"
#include "runtime/backend_factory.h"
#include "runtime/cuda/cublaslt_gemm.h"
#include "runtime/cuda/cublaslt_library.h"
#include "runtime/cuda/cuda_context.h"
#include "runtime/cuda/weight_uploader.h"
#include "runtime/kv_pool_budget.h"

namespace kvcc::pipeline {
namespace {

// The calibration file a calibrated scheme reads, with a fix in the error when it is missing.
absl::StatusOr<passes::KvParams> ReadParamsFor(passes::KvQuantScheme scheme,
                                               const std::string& model_dir,
                                               const std::string& explicit_path,
                                               std::string* path_out) {
  const std::string path =
      explicit_path.empty() ? passes::KvParamsPath(model_dir) : explicit_path;
  *path_out = path;
  auto params = passes::ReadKvParams(path);
  if (params.ok() || !absl::IsNotFound(params.status())) return params;
  const std::string fix =
      explicit_path.empty()
          ? absl::StrCat("run `kvcc calibrate ", model_dir.empty() ? "<model_dir>" : model_dir,
                         "` first, or pass --kv-params FILE")
          : "check --kv-params, or run `kvcc calibrate <model_dir> --work-dir DIR` to make it";
  return absl::NotFoundError(absl::StrCat("KV-cache scheme ", passes::KvQuantSchemeName(scheme),
                                          " needs calibration parameters but ", path,
                                          " does not exist: ", fix));
}

// A tokenizer made for another model yields ids the embedding table lacks; found here, with
// both files named, instead of at the first embedding lookup.
absl::Status CheckTokenizerFitsModel(const tokenizer::LoadedTokenizer& loaded,
                                     const ir::ModelConfig& config,
                                     const std::string& model_path) {
  if (config.vocab_size <= 0) return absl::OkStatus();
  const tokenizer::Tokenizer& t = *loaded.tokenizer;
  const std::pair<const char*, int64_t> ids[] = {
      {"has ids up to", int64_t{t.vocab_size()} - 1},
      {"has bos id", t.bos_id()},
      {"has eos id", t.eos_id()},
      {"has unk id", t.unk_id()}};
  for (const auto& [what, id] : ids) {
    if (id >= config.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          loaded.tokenizer_file, ": the tokenizer ", what, " ", id, " but the model ", model_path,
          " has vocab_size ", config.vocab_size, " (ids 0..", config.vocab_size - 1,
          "); the tokenizer belongs to another model"));
    }
  }
  return absl::OkStatus();
}

// The driver's start (cuInit, the primary context) and the library loads run on their own
// threads while OpenModel reads the checksums, the weights digest and the tokenizer. The
// libraries wait until a GPU is found: a CPU-only host never loads them (cuBLASLt's exit
// handlers can crash without one). NVRTC is preloaded only for a checkpoint, whose kernels are
// compiled or found in the kernel cache: a compiled artifact carries its cubins and keys them by
// its manifest's NVRTC version, and loaded beside the context NVRTC delayed it (the first
// kvcc bench startup runs on the H200: context ready at 254-287 ms against 117-161 ms for a
// bare process, kvcc bench context). cuBLASLt (541 MB) waits for the context for the same
// reason, and a small model's first step does not need it (CublasLtGemm opens it at the first
// GEMM that reaches cuBLASLt).
std::mutex library_thread_mu;
std::shared_future<void>* library_thread = nullptr;  // leaked: AwaitGpuPrewarm joins it

void StartGpuPrewarm(const std::string& device, const std::string& model_path) {
  if (device == "cpu") return;
  runtime::PrewarmCudaContext(0);
  std::error_code ec;
  const bool compiled =
      std::filesystem::exists(std::filesystem::path(model_path) / kCompiledManifestName, ec);
  // An artifact's upload verifies as it stages (its model.weights has chunk digests), through
  // pinned buffers that take ~50 ms to pin: for a model whose upload is long enough to use all
  // of them, they are pinned beside the opening instead (a small model's few pinned bytes are
  // not worth a thread that holds the driver meanwhile).
  const auto weights_bytes =
      std::filesystem::file_size(std::filesystem::path(model_path) / ir::kWeightsFileName, ec);
  if (compiled && !ec && weights_bytes >= (uintmax_t{1} << 30)) runtime::PrepinWeightStaging();
  auto libraries = [compiled] {
    if (!compiled) codegen::PreloadNvrtc();
    runtime::AwaitPrewarmedCudaContext();
    runtime::PreloadCublasLt();
    runtime::WarmCublasLt();
  };
  std::lock_guard<std::mutex> lock(library_thread_mu);
  if (library_thread != nullptr) return;
  library_thread = new std::shared_future<void>(std::async(std::launch::async, [libraries] {
                                                  if (runtime::CudaDeviceAvailable()) libraries();
                                                }).share());
}

// A graph `kvcc compile` lowered runs as it is; a flag asking for another cache scheme (or
// for parameters) is an error rather than silently ignored.
absl::StatusOr<passes::KvQuantScheme> CompiledScheme(const std::string& lowered,
                                                    const std::string& model_dir,
                                                    const LowerOptions& options) {
  auto compiled = passes::ParseKvQuantScheme(lowered);
  if (!compiled.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(model_dir, ": model.onnx metadata ",
                                                   kLoweredMetadataKey, ": ",
                                                   compiled.status().message()));
  }
  const std::string fix = absl::StrCat(
      "; drop the flag, or compile another artifact with `kvcc compile <checkpoint> -o DIR "
      "--kv-quant SCHEME`");
  if (!options.kv_params.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--kv-params ", options.kv_params, ": ", model_dir, " is a compiled artifact whose KV "
        "parameters are built into its graph", fix));
  }
  if (!options.kv_quant_part.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--kv-quant-part ", options.kv_quant_part, ": ", model_dir,
        " is a compiled artifact whose KV cache scheme is built into its graph", fix));
  }
  if (options.quant_policy != 0 || !options.kv_quant.empty()) {
    KVCC_ASSIGN_OR_RETURN(passes::KvQuantScheme asked,
                          passes::ResolveKvQuantScheme(options.quant_policy, options.kv_quant));
    if (asked != *compiled) {
      return absl::InvalidArgumentError(absl::StrCat(
          model_dir, " was compiled with the KV cache scheme ",
          passes::KvQuantSchemeName(*compiled), " but the flags ask for ",
          passes::KvQuantSchemeName(asked), fix));
    }
  }
  return *compiled;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ir::Module>> LoadModelChecked(const std::string& path,
                                                            const std::string& model_format) {
  KVCC_RETURN_IF_ERROR(CheckCompiledArtifact(path).status());
  KVCC_ASSIGN_OR_RETURN(frontend::ModelFormat format, frontend::ParseModelFormat(model_format));
  KVCC_ASSIGN_OR_RETURN(std::unique_ptr<ir::Module> module, frontend::LoadModel(path, format));
  return module;
}

absl::StatusOr<passes::KvQuantScheme> LowerForExecution(ir::Module& module,
                                                        const std::string& model_dir,
                                                        const LowerOptions& options) {
  if (auto it = module.metadata.find(kLoweredMetadataKey); it != module.metadata.end()) {
    std::error_code ec;
    if (!std::filesystem::exists(std::filesystem::path(model_dir) / kCompiledManifestName, ec)) {
      return absl::DataLossError(absl::StrCat(
          model_dir, ": model.onnx is a compiled graph but ", kCompiledManifestName,
          ", which checks the artifact's files, is missing (re-run `kvcc compile`)"));
    }
    return CompiledScheme(it->second, model_dir, options);
  }
  KVCC_ASSIGN_OR_RETURN(passes::KvQuantScheme scheme,
                        passes::ResolveKvQuantScheme(options.quant_policy, options.kv_quant));
  passes::PassContext context;
  context.kv_scheme = scheme;
  KVCC_ASSIGN_OR_RETURN(context.kv_only_part,
                        passes::ParseKvQuantPart(options.kv_quant_part, scheme));
  passes::KvParams params;
  std::string pass_list;
  if (passes::NeedsCalibration(scheme)) {
    KVCC_ASSIGN_OR_RETURN(params, ReadParamsFor(scheme, model_dir, options.kv_params,
                                                &context.kv_params_source));
    context.kv_params = &params;
    pass_list = "kv-calibrate,";
  }
  if (scheme != passes::KvQuantScheme::kNone) absl::StrAppend(&pass_list, "kv-quantize,");
  if (options.fusions) absl::StrAppend(&pass_list, passes::kExecutionFusions);
  passes::PassManager pm;
  KVCC_RETURN_IF_ERROR(passes::AddPasses(pm, pass_list, context));
  if (options.dump != nullptr && !options.dump_after.empty()) {
    pm.DumpAfter(options.dump_after, options.dump);
  }
  KVCC_RETURN_IF_ERROR(pm.Run(module));
  return scheme;
}

absl::StatusOr<std::unique_ptr<ir::Module>> LoadForExecution(const std::string& path,
                                                             const LowerOptions& options) {
  KVCC_ASSIGN_OR_RETURN(std::unique_ptr<ir::Module> module,
                        LoadModelChecked(path, options.model_format));
  KVCC_RETURN_IF_ERROR(LowerForExecution(*module, path, options).status());
  return module;
}

absl::StatusOr<int64_t> SessionContext(const ir::Module& module, const EngineConfig& config) {
  if (config.max_len <= 0) return absl::InvalidArgumentError("--max-len must be positive");
  const int64_t model_ctx = module.config.max_position > 0 ? module.config.max_position
                                                           : config.max_len;
  return std::min(config.max_len, model_ctx);
}

absl::StatusOr<std::unique_ptr<runtime::Engine>> StartEngine(
    std::shared_ptr<const ir::Module> module, const EngineConfig& config,
    runtime::CudaKernelSource kernels) {
  if (module == nullptr) return absl::InvalidArgumentError("no module to run");
  KVCC_ASSIGN_OR_RETURN(std::unique_ptr<runtime::Backend> backend,
                        runtime::CreateBackend(config.device, config.threads, std::move(kernels)));
  runtime::EngineOptions options;
  KVCC_ASSIGN_OR_RETURN(options.max_context, SessionContext(*module, config));
  options.default_sessions = std::max(1, config.sessions);
  options.full_precision_cache = config.full_precision_cache;
  options.cache_tokens = config.cache_tokens;
  if (options.cache_tokens <= 0 && config.device == "cuda") {
    // As LMDeploy: the pool takes --cache-max-entry-count of the memory left after weights.
    KVCC_ASSIGN_OR_RETURN(runtime::KvPoolBudget budget,
                          runtime::KvPoolFromDeviceMemory(*module, config.cache_max_entry_count,
                                                          options.block_size));
    options.cache_tokens = budget.tokens;
  }
  return runtime::Engine::Create(std::move(module), std::move(backend), options);
}

absl::StatusOr<OpenedModel> OpenModel(const OpenOptions& options) {
  OpenedModel opened;
  EngineConfig engine = options.engine;
  StartGpuPrewarm(engine.device, options.model_path);
  KVCC_ASSIGN_OR_RETURN(bool compiled, CheckCompiledArtifact(options.model_path));
  ir::StartupMark("verified");
  KVCC_ASSIGN_OR_RETURN(frontend::ModelFormat format,
                        frontend::ParseModelFormat(options.lower.model_format));
  // A compiled artifact's weights are used as stored, so their digests can wait for the
  // upload, which checks them as it reads them (a checkpoint's lowering reads them first).
  ir::ReadOnnxOptions read;
  read.defer_chunk_digests = compiled;
  KVCC_ASSIGN_OR_RETURN(std::unique_ptr<ir::Module> module,
                        frontend::LoadModel(options.model_path, format, read));
  const std::shared_ptr<ir::WeightsChunkDigests> unverified = module->unverified_weights;
  ir::StartupMark("module");
  if (options.tokenizer) {
    KVCC_ASSIGN_OR_RETURN(std::string tok_dir, frontend::FindTokenizerDir(options.model_path));
    KVCC_ASSIGN_OR_RETURN(opened.tokenizer, tokenizer::LoadTokenizer(tok_dir));
    KVCC_RETURN_IF_ERROR(
        CheckTokenizerFitsModel(*opened.tokenizer, module->config, options.model_path));
    ir::StartupMark("tokenizer");
  }
  if (engine.device.empty()) engine.device = runtime::DefaultDeviceName();
  runtime::CudaKernelSource kernels;
  if (compiled) {
    KVCC_ASSIGN_OR_RETURN(kernels, OpenArtifactKernels(options.model_path, *module, engine));
  }
  KVCC_ASSIGN_OR_RETURN(opened.kv_scheme,
                        LowerForExecution(*module, options.model_path, options.lower));
  // Generation stops at the tokenizer's EOS and at every EOS id of config.json and of
  // generation_config.json (Llama 3 lists <|eot_id|> only in the latter).
  std::vector<int64_t> eos = module->config.eos_token_ids;
  KVCC_ASSIGN_OR_RETURN(std::optional<frontend::GenerationConfig> generation,
                        frontend::LoadGenerationConfig(options.model_path,
                                                       module->config.vocab_size));
  if (generation.has_value()) {
    eos.insert(eos.end(), generation->eos_token_ids.begin(), generation->eos_token_ids.end());
  }
  KVCC_ASSIGN_OR_RETURN(opened.engine,
                        StartEngine(std::shared_ptr<const ir::Module>(std::move(module)),
                                    engine, std::move(kernels)));
  // The executor checks them before its first step; this keeps an engine that never built
  // one from being handed out over unchecked weights.
  if (unverified != nullptr) KVCC_RETURN_IF_ERROR(unverified->CheckAll());
  if (opened.tokenizer.has_value()) {
    const int32_t tok_eos = opened.tokenizer->tokenizer->eos_id();
    if (tok_eos >= 0) eos.insert(eos.begin(), tok_eos);
  }
  for (int64_t id : eos) {
    const int32_t token = static_cast<int32_t>(id);
    if (std::find(opened.stop_tokens.begin(), opened.stop_tokens.end(), token) ==
        opened.stop_tokens.end()) {
      opened.stop_tokens.push_back(token);
    }
  }
  return opened;
}

void AwaitGpuPrewarm() {
  std::shared_future<void> f;
  {
    std::lock_guard<std::mutex> lock(library_thread_mu);
    if (library_thread == nullptr) return;
    f = *library_thread;
  }
  f.wait();
}

}  // namespace kvcc::pipeline
