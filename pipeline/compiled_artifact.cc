#include "pipeline/compiled_artifact.h"

#include <filesystem>
#include <memory>
#include <set>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "codegen/kernel_builder.h"
#include "codegen/kernel_cache.h"
#include "codegen/kernel_store_artifact.h"
#include "ir/file_read.h"
#include "ir/status_macros.h"
#include "runtime/engine.h"

namespace kvcc::pipeline {
namespace {
namespace fs = std::filesystem;

std::string PathIn(const std::string& dir, const char* name) {
  return (fs::path(dir) / name).string();
}

}  // namespace

absl::StatusOr<CompiledManifest> ReadCompiledManifest(const std::string& dir) {
  const std::string path = PathIn(dir, kCompiledManifestName);
  KVCC_ASSIGN_OR_RETURN(std::string text,
                        ir::ReadRegularFile(path, int64_t{1} << 22, "compiled artifact manifest"));
  return ParseCompiledManifest(text, path);
}

absl::StatusOr<bool> CheckCompiledArtifact(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(PathIn(path, kCompiledManifestName), ec)) return false;
  KVCC_ASSIGN_OR_RETURN(CompiledManifest manifest, ReadCompiledManifest(path));
  KVCC_RETURN_IF_ERROR(VerifyFiles(manifest, path));
  return true;
}

absl::StatusOr<runtime::KernelTuning> ReadArtifactTuning(const std::string& dir,
                                                         const ir::Module& module) {
  const std::string path = PathIn(dir, runtime::kTuningFileName);
  KVCC_ASSIGN_OR_RETURN(std::string text,
                        ir::ReadRegularFile(path, int64_t{1} << 22, "artifact tuning file"));
  KVCC_ASSIGN_OR_RETURN(runtime::KernelTuning tuning, runtime::ParseTuning(text, path));
  KVCC_ASSIGN_OR_RETURN(std::vector<runtime::CudaAttentionConfig> configs,
                        runtime::PlanAttentionConfigs(module, runtime::EngineOptions{}.block_size,
                                                      {}));
  std::set<std::string> known;
  for (const runtime::CudaAttentionConfig& c : configs) known.insert(runtime::DecodeTuningKey(c));
  for (const runtime::DecodeTuning& d : tuning.decode) {
    if (known.count(d.kernel) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tunes the decode kernel [", d.kernel, "], which this model does not use (",
          "the file belongs to another artifact; re-run `kvcc compile`)"));
    }
  }
  return tuning;
}

absl::StatusOr<runtime::CudaKernelSource> OpenArtifactKernels(const std::string& dir,
                                                              const ir::Module& module,
                                                              const EngineConfig& config) {
  KVCC_ASSIGN_OR_RETURN(runtime::KernelTuning tuning, ReadArtifactTuning(dir, module));
  runtime::CudaKernelSource source;
  if (config.device != "cuda") return source;
  std::string present;
  if (absl::StatusOr<codegen::GpuTarget> t = codegen::DetectGpuTarget(0); t.ok()) {
    present = runtime::GpuArchName(*t);
  }
  KVCC_ASSIGN_OR_RETURN(
      source.store,
      codegen::ArtifactKernelStore::Open(
          PathIn(dir, codegen::kKernelDirName),
          std::make_shared<codegen::KernelCache>(codegen::KernelCache::DefaultDir()),
          !config.no_jit, present));
  source.tuning = std::make_shared<const runtime::KernelTuning>(std::move(tuning));
  return source;
}

}  // namespace kvcc::pipeline
