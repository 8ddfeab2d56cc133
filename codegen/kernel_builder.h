// Turns a kernel spec into a loadable cubin: render the templates, look the result up in a
// kernel store (the on-disk cache, an artifact's kernels), and compile with NVRTC on a miss. A
// stored kernel keeps the compile log beside the cubin, so it reports the same ptxas resource
// usage as a fresh one.
#pragma once

#include "absl/status/statusor.h"
#include "codegen/kernel_cache.h"
#include "codegen/kernel_store.h"
#include "codegen/kernel_spec.h"
#include "codegen/nvrtc_compiler.h"

namespace kvcc::codegen {

struct CachedCompile {
  CompiledKernel compiled;  // from_cache says whether NVRTC ran
  std::string cache_key;
};

// Compiles `source` (see CompileCuda) for `arch_name` through `cache` (a kernel store; may be
// null: always compile). The key covers the source, the options, the target, NVRTC's version and every
// embedded file the source may include.
absl::StatusOr<CachedCompile> CompileCached(absl::string_view program_name,
                                            absl::string_view source,
                                            absl::string_view kernel_name,
                                            absl::string_view arch_name, KernelStore* cache);

struct BuiltKernel {
  RenderedKernel rendered;
  CompiledKernel compiled;
  std::string cache_key;
};

// `cache` may be null (always compile). A spec whose register cap was defaulted and that
// spills under it is rebuilt without the cap.
absl::StatusOr<BuiltKernel> BuildKernel(const KernelSpec& spec, KernelStore* cache);
// Exactly `spec` (defaults filled in), no fallback.
absl::StatusOr<BuiltKernel> BuildExactly(const KernelSpec& spec, KernelStore* cache);

// The target of GPU `device` as (compute capability, arch-specific): the H100 gives (90, true)
// so the kernels may use sm_90a. Fails when no GPU or driver is present.
struct GpuTarget {
  int arch = 0;
  bool arch_specific = false;
};
absl::StatusOr<GpuTarget> DetectGpuTarget(int device);

}  // namespace kvcc::codegen
