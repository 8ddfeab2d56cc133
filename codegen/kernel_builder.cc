#include "codegen/kernel_builder.h"

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "codegen/kernel_templates.h"
#include "ir/status_macros.h"

namespace kvcc::codegen {
absl::StatusOr<CachedCompile> CompileCached(absl::string_view program_name,
                                            absl::string_view source,
                                            absl::string_view kernel_name,
                                            absl::string_view arch_name, KernelStore* cache) {
  CachedCompile out;
  const std::string source_digest = absl::StrCat(source, "\n", EmbeddedTemplatesDigest());
  auto key_for = [&](const std::string& nvrtc_version) {
    return KernelCache::Key(source_digest,
                            absl::StrJoin(NvrtcOptions(arch_name, nvrtc_version), " "),
                            arch_name, nvrtc_version);
  };
  const std::string stored_version = cache != nullptr ? cache->KeyNvrtcVersion() : "";
  out.cache_key = key_for(stored_version.empty() ? NvrtcVersion() : stored_version);
  if (cache != nullptr) {
    KVCC_ASSIGN_OR_RETURN(std::optional<std::string> hit, cache->Lookup(out.cache_key));
    if (hit.has_value() && DecodeKernelPayload(*hit, kernel_name, &out.compiled)) return out;
    // The store's kernels came from another NVRTC: what this process compiles (or cached
    // before) goes by this NVRTC's key.
    if (!stored_version.empty() && stored_version != NvrtcVersion()) {
      out.cache_key = key_for(NvrtcVersion());
      KVCC_ASSIGN_OR_RETURN(hit, cache->Lookup(out.cache_key));
      if (hit.has_value() && DecodeKernelPayload(*hit, kernel_name, &out.compiled)) return out;
    }
  }
  KVCC_ASSIGN_OR_RETURN(out.compiled, CompileCuda(program_name, source, kernel_name, arch_name));
  if (cache != nullptr) {
    // A cache that cannot be written (read-only home, full disk) costs a recompile next time,
    // not this run.
    (void)cache->Store(out.cache_key, EncodeKernelPayload(out.compiled));
  }
  return out;
}

absl::StatusOr<BuiltKernel> BuildKernel(const KernelSpec& spec, KernelStore* cache) {
  absl::StatusOr<BuiltKernel> built = BuildExactly(spec, cache);
  if (!built.ok()) return built;
  // The default register cap (min_blocks, see ResolveDefaults) buys occupancy; it is never
  // worth a spill, so a capped kernel that spills is rebuilt without the cap.
  const ResourceUsage& u = built->compiled.usage;
  if (spec.min_blocks == 0 && built->rendered.spec.min_blocks > 1 &&
      u.spill_store_bytes + u.spill_load_bytes > 0) {
    KernelSpec uncapped = spec;
    uncapped.min_blocks = 1;
    return BuildExactly(uncapped, cache);
  }
  return built;
}

absl::StatusOr<BuiltKernel> BuildExactly(const KernelSpec& spec, KernelStore* cache) {
  absl::StatusOr<RenderedKernel> rendered = RenderKernel(spec);
  if (!rendered.ok()) return rendered.status();
  BuiltKernel built;
  built.rendered = std::move(*rendered);
  KVCC_ASSIGN_OR_RETURN(
      CachedCompile compiled,
      CompileCached(built.rendered.program_name, built.rendered.source,
                    built.rendered.kernel_name, built.rendered.spec.ArchName(), cache));
  built.compiled = std::move(compiled.compiled);
  built.cache_key = std::move(compiled.cache_key);
  return built;
}

absl::StatusOr<GpuTarget> DetectGpuTarget(int device) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    cudaGetLastError();
    return absl::FailedPreconditionError(absl::StrCat(
        "no CUDA device: ", err != cudaSuccess ? cudaGetErrorString(err) : "count is 0"));
  }
  if (device < 0 || device >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device ", device, " does not exist (", count, " present)"));
  }
  cudaDeviceProp prop;
  if ((err = cudaGetDeviceProperties(&prop, device)) != cudaSuccess) {
    return absl::InternalError(
        absl::StrCat("cudaGetDeviceProperties: ", cudaGetErrorString(err)));
  }
  GpuTarget t;
  t.arch = prop.major * 10 + prop.minor;
  // The "a" targets carry the chip's own instructions (wgmma, setmaxnreg) and run only there.
  t.arch_specific = t.arch == 90 || t.arch == 100;
  return t;
}

}  // namespace kvcc::codegen
