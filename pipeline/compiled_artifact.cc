#include "pipeline/compiled_artifact.h"

#include <filesystem>
#include <memory>
#include <set>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "ir/xxhash64.h"
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

absl::StatusOr<std::string> DescribeCompiledArtifact(const std::string& dir) {
  KVCC_ASSIGN_OR_RETURN(CompiledManifest m, ReadCompiledManifest(dir));
  std::string out = absl::StrCat("compiled artifact (", kCompiledManifestName, ", kvcc ",
                                 m.kvcc_version, ")\n  source: ", m.source, " (",
                                 m.source_fingerprint, ")\n  KV cache scheme: ", m.kv_scheme,
                                 m.w4_layout.empty() ? "" : "\n  4-bit linears: ", m.w4_layout,
                                 "\n  arches: ", absl::StrJoin(m.arches, ", "), "\n  options:");
  for (const auto& [k, v] : m.options) absl::StrAppend(&out, " ", k, "=", v);
  const std::string kernels_dir = PathIn(dir, codegen::kKernelDirName);
  KVCC_ASSIGN_OR_RETURN(std::string text,
                        ir::ReadRegularFile(PathIn(kernels_dir, codegen::kKernelManifestName),
                                            1 << 24, "artifact kernel manifest"));
  KVCC_ASSIGN_OR_RETURN(codegen::KernelManifest km,
                        codegen::ParseKernelManifest(text, PathIn(kernels_dir,
                                                                  codegen::kKernelManifestName)));
  absl::StrAppend(&out, "\n  kernels (NVRTC ", km.nvrtc_version, "): ", km.kernels.size(), "\n");
  absl::StrAppend(&out, absl::StrFormat("    %-8s %4s %6s  %-44s %s\n", "arch", "regs", "spills",
                                        "cubin", "spec"));
  for (const codegen::StoredKernel& k : km.kernels) {
    absl::StrAppend(&out, absl::StrFormat("    %-8s %4d %6d  %-44s %s\n", k.arch, k.registers,
                                          k.spill_store_bytes + k.spill_load_bytes, k.cubin_file,
                                          k.spec));
  }
  const std::string tuning_path = PathIn(dir, runtime::kTuningFileName);
  KVCC_ASSIGN_OR_RETURN(std::string tuning_text,
                        ir::ReadRegularFile(tuning_path, int64_t{1} << 22, "artifact tuning file"));
  KVCC_ASSIGN_OR_RETURN(runtime::KernelTuning tuning,
                        runtime::ParseTuning(tuning_text, tuning_path));
  absl::StrAppend(&out, "  tuning: ", tuning.autotuned ? "autotuned on " : "heuristic",
                  tuning.autotuned ? tuning.device : "", "\n");
  for (const runtime::DecodeTuning& d : tuning.decode) {
    absl::StrAppend(&out, "    decode [", d.kernel, "]: threads ", d.threads, " vec_bytes ",
                    d.vec_bytes, " unroll ", d.unroll);
    if (d.buckets.empty()) absl::StrAppend(&out, ", splits by occupancy");
    for (const runtime::TunedBucket& b : d.buckets) {
      absl::StrAppend(&out, absl::StrFormat("\n      batch <= %d, context <= %d: %d splits "
                                            "(%.1f us)", b.bucket.max_batch,
                                            b.bucket.max_context, b.bucket.splits, b.us));
    }
    absl::StrAppend(&out, "\n");
  }
  for (const runtime::GemmTuning& g : tuning.gemm) {
    absl::StrAppend(&out, absl::StrFormat("    gemm %dx%d . %dx%d %s: ", g.m, g.k, g.k, g.n,
                                          ir::DTypeName(g.dtype)));
    if (g.heuristic) {
      absl::StrAppend(&out, absl::StrFormat("heuristic (%.2f us)\n", g.heuristic_us));
    } else {
      absl::StrAppend(&out, absl::StrFormat("algo %d tile %d stages %d splitk %d, %.2f us "
                                            "(heuristic %.2f us)\n", g.algo.id, g.algo.tile,
                                            g.algo.stages, g.algo.splitk, g.us, g.heuristic_us));
    }
  }
  absl::StrAppend(&out, "  files (XXH64):\n");
  for (const auto& [name, want] : m.files) {
    absl::StatusOr<FileDigest> got = DigestFile(dir, name);
    const bool ok = got.ok() && got->bytes == want.bytes && got->xxh64 == want.xxh64;
    absl::StrAppend(&out, absl::StrFormat("    %s %10d  %-56s %s\n", ir::Xxh64Hex(want.xxh64),
                                          want.bytes, name, ok ? "ok" : "MISMATCH"));
  }
  return out;
}

}  // namespace kvcc::pipeline
