#include "pipeline/artifact_compiler.h"

#include <filesystem>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "codegen/kernel_builder.h"
#include "codegen/kernel_cache.h"
#include "codegen/kernel_spec.h"
#include "codegen/kernel_store.h"
#include "codegen/kernel_store_artifact.h"
#include "frontend/model_loader.h"
#include "ir/atomic_dir.h"
#include "ir/atomic_file.h"
#include "ir/file_read.h"
#include "ir/group_quant.h"
#include "ir/onnx_io.h"
#include "ir/status_macros.h"
#include "ir/verifier.h"
#include "pipeline/model_opener.h"
#include "pipeline/w4_packing.h"
#include "runtime/cuda/kernel_plan.h"
#include "runtime/engine.h"

namespace kvcc::pipeline {
namespace {
namespace fs = std::filesystem;

bool IsFile(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// The heuristic choices for every decode kernel of the plan, as tuning.json records them.
absl::StatusOr<runtime::KernelTuning> HeuristicTuning(const ir::Module& module, int block_size,
                                                      const codegen::GpuTarget& target) {
  KVCC_ASSIGN_OR_RETURN(std::vector<runtime::CudaAttentionConfig> configs,
                        runtime::PlanAttentionConfigs(module, block_size, {}));
  runtime::KernelTuning tuning;
  for (const runtime::CudaAttentionConfig& c : configs) {
    const codegen::KernelSpec planned = runtime::CudaAttention::KernelSpecs(c, target)[0];
    KVCC_ASSIGN_OR_RETURN(codegen::KernelSpec decode, codegen::ResolveDefaults(planned));
    runtime::DecodeTuning d;
    d.kernel = runtime::DecodeTuningKey(c);
    d.threads = decode.threads;
    d.vec_bytes = decode.vec_bytes;
    d.unroll = decode.unroll;
    tuning.decode.push_back(std::move(d));
  }
  return tuning;
}

// Where the parameters of a calibrated scheme come from; writes them to `out_path`.
absl::StatusOr<std::string> ProvideKvParams(const CompileOptions& options,
                                            const std::string& out_path) {
  std::string from = options.lower.kv_params;
  if (from.empty() && IsFile(passes::KvParamsPath(options.model_path))) {
    from = passes::KvParamsPath(options.model_path);
  }
  if (!from.empty()) {
    KVCC_ASSIGN_OR_RETURN(std::string bytes,
                          ir::ReadRegularFile(from, int64_t{1} << 28, "KV parameter file"));
    KVCC_RETURN_IF_ERROR(ir::WriteFileAtomically(out_path, bytes));
    return from;
  }
  if (!options.calibrate) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the KV scheme needs calibration parameters: pass --kv-params FILE or calibration "
        "flags, or put kv_params.json beside ", options.model_path));
  }
  KVCC_ASSIGN_OR_RETURN(passes::KvParams params, options.calibrate());
  KVCC_RETURN_IF_ERROR(passes::WriteKvParams(params, out_path));
  return std::string("calibration");
}

// Relative paths of the regular files under `dir`, sorted.
std::vector<std::string> FilesUnder(const std::string& dir) {
  std::set<std::string> names;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec)) names.insert(fs::relative(it->path(), dir, ec).string());
  }
  return {names.begin(), names.end()};
}

}  // namespace

std::vector<std::string> DefaultArches() {
  absl::StatusOr<codegen::GpuTarget> present = codegen::DetectGpuTarget(0);
  if (present.ok()) return {runtime::GpuArchName(*present)};
  return {"sm_90a", "sm_80"};
}

absl::StatusOr<CompileResult> CompileArtifact(const CompileOptions& options) {
  std::vector<codegen::GpuTarget> targets;
  CompileResult result;
  for (const std::string& arch : options.arches.empty() ? DefaultArches() : options.arches) {
    KVCC_ASSIGN_OR_RETURN(codegen::GpuTarget t, runtime::ParseGpuArch(arch));
    targets.push_back(t);
    result.manifest.arches.push_back(runtime::GpuArchName(t));
  }
  KVCC_ASSIGN_OR_RETURN(frontend::ModelDirKind kind,
                        frontend::ClassifyModelDir(options.model_path));
  if (kind == frontend::ModelDirKind::kArtifact &&
      IsFile(fs::path(options.model_path) / kCompiledManifestName)) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.model_path, " is already a compiled artifact; compile its source checkpoint"));
  }
  std::error_code ec;
  if (fs::equivalent(options.model_path, options.out_dir, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.out_dir, ": the artifact directory must differ from the model directory"));
  }
  if (!options.lower.kv_quant_part.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--kv-quant-part ", options.lower.kv_quant_part,
        ": a diagnostic for kvcompare and ppl; an artifact stores the whole scheme"));
  }
  // Refuses an unrelated non-empty directory before the (long) work.
  KVCC_ASSIGN_OR_RETURN(std::unique_ptr<ir::AtomicDirectory> out,
                        ir::AtomicDirectory::Create(options.out_dir, ir::kOnnxFileName));
  KVCC_ASSIGN_OR_RETURN(frontend::ModelFormat format,
                        frontend::ParseModelFormat(options.lower.model_format));
  KVCC_ASSIGN_OR_RETURN(std::unique_ptr<ir::Module> module,
                        frontend::LoadModel(options.model_path, format));
  const passes::KvModelIdentity identity = passes::IdentityOf(*module);

  LowerOptions lower = options.lower;
  lower.fusions = true;
  KVCC_ASSIGN_OR_RETURN(passes::KvQuantScheme scheme,
                        passes::ResolveKvQuantScheme(lower.quant_policy, lower.kv_quant));
  if (passes::NeedsCalibration(scheme)) {
    lower.kv_params = passes::KvParamsPath(out->path());
    KVCC_ASSIGN_OR_RETURN(result.kv_params_source, ProvideKvParams(options, lower.kv_params));
  }
  KVCC_ASSIGN_OR_RETURN(result.kv_scheme, LowerForExecution(*module, options.model_path, lower));
  // The 4-bit linears go into the layout the GPU kernels read (pipeline/w4_packing.h).
  KVCC_ASSIGN_OR_RETURN(W4PackingSummary packing, PackW4Linears(*module));
  result.w4_plain = packing.plain;
  if (packing.packed + static_cast<int64_t>(packing.plain.size()) > 0) {
    result.manifest.w4_layout =
        absl::StrCat(ir::kW4PackedLayout, " v", ir::kW4PackedLayoutVersion, ": ", packing.packed,
                     " packed, ", packing.plain.size(), " plain");
  }
  module->metadata[kLoweredMetadataKey] = std::string(passes::KvQuantSchemeName(result.kv_scheme));
  KVCC_RETURN_IF_ERROR(ir::Verify(*module));
  KVCC_RETURN_IF_ERROR(ir::WriteOnnx(*module, out->path()));
  KVCC_RETURN_IF_ERROR(frontend::CopyModelSideFiles(options.model_path, out->path()).status());
  if (IsFile(fs::path(options.model_path) / "chat_template.jinja")) {
    KVCC_ASSIGN_OR_RETURN(std::string jinja,
                          ir::ReadRegularFile((fs::path(options.model_path) / "chat_template.jinja")
                                                  .string(),
                                              int64_t{1} << 24, "chat template"));
    KVCC_RETURN_IF_ERROR(
        ir::WriteFileAtomically((fs::path(out->path()) / "chat_template.jinja").string(), jinja));
  }

  // Kernels: the heuristic plan, plus the tuned one when tuning differs.
  const int block_size = runtime::EngineOptions{}.block_size;
  KVCC_ASSIGN_OR_RETURN(std::vector<runtime::PlannedKernel> plan,
                        runtime::PlanKernels(*module, block_size, {}, targets));
  runtime::KernelTuning tuning;
  if (options.autotune) {
    KVCC_ASSIGN_OR_RETURN(tuning, options.autotune(*module));
    KVCC_ASSIGN_OR_RETURN(std::vector<runtime::PlannedKernel> tuned,
                          runtime::PlanKernels(*module, block_size, tuning, targets));
    std::set<std::string> have;
    for (const runtime::PlannedKernel& k : plan) have.insert(k.Key());
    for (runtime::PlannedKernel& k : tuned) {
      if (have.insert(k.Key()).second) plan.push_back(std::move(k));
    }
  }
  codegen::KernelCache cache(codegen::KernelCache::DefaultDir());
  codegen::RecordingKernelStore recorder(&cache);
  std::vector<codegen::KernelToStore> stored;
  // A tuned attention set shares its prefill, merge and cache-write kernels (and a decode
  // configuration the tuning left as it was) with the heuristic set: one entry per cache key.
  std::set<std::string> stored_keys;
  const int64_t nvrtc_before = codegen::NvrtcCompileCount();
  for (size_t i = 0; i < plan.size(); ++i) {
    const runtime::PlannedKernel& k = plan[i];
    absl::StatusOr<codegen::CompiledKernel> built = runtime::BuildPlanned(k, &recorder);
    if (!built.ok()) {
      return absl::Status(built.status().code(), absl::StrCat("compiling kernel [", k.Key(),
                                                              "]: ", built.status().message()));
    }
    for (auto& [key, payload] : recorder.TakeRecorded()) {
      if (!stored_keys.insert(key).second) continue;
      codegen::KernelToStore s;
      s.key = key;
      s.spec = k.Key();
      s.arch = k.ArchName();
      s.entry = k.EntryPoint();
      s.program = k.Program();
      if (!codegen::DecodeKernelPayload(payload, s.entry, &s.compiled)) {
        return absl::InternalError(absl::StrCat("kernel [", k.Key(), "]: empty build"));
      }
      stored.push_back(std::move(s));
    }
    if (options.kernel_progress) options.kernel_progress(i + 1, plan.size());
  }
  result.kernels = static_cast<int>(stored.size());
  result.nvrtc_compiles = codegen::NvrtcCompileCount() - nvrtc_before;
  KVCC_RETURN_IF_ERROR(codegen::WriteKernelDir(
      (fs::path(out->path()) / codegen::kKernelDirName).string(), stored));

  if (!options.autotune) {
    KVCC_ASSIGN_OR_RETURN(tuning, HeuristicTuning(*module, block_size, targets.front()));
  }
  KVCC_RETURN_IF_ERROR(ir::WriteFileAtomically(
      (fs::path(out->path()) / runtime::kTuningFileName).string(), runtime::TuningToJson(tuning)));

  CompiledManifest& m = result.manifest;
  m.source = options.model_path;
  m.source_fingerprint = absl::StrCat("config:", identity.config_fingerprint,
                                      " weights:", identity.weights_fingerprint);
  m.kv_scheme = std::string(passes::KvQuantSchemeName(result.kv_scheme));
  m.options = options.recorded_options;
  for (const std::string& name : FilesUnder(out->path())) {
    if (name == ir::kOnnxFileName || name == ir::kWeightsFileName) continue;
    KVCC_ASSIGN_OR_RETURN(m.files[name], DigestFile(out->path(), name));
  }
  KVCC_RETURN_IF_ERROR(ir::WriteFileAtomically(
      (fs::path(out->path()) / kCompiledManifestName).string(), CompiledManifestToJson(m)));
  KVCC_RETURN_IF_ERROR(out->Commit());
  return result;
}

}  // namespace kvcc::pipeline
