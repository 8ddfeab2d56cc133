// Turns a kernel spec into a loadable cubin: render the templates, look the result up in the
// on-disk kernel cache, and compile with NVRTC on a miss.
#pragma once

#include "absl/status/statusor.h"
#include "codegen/kernel_cache.h"
#include "codegen/kernel_spec.h"
#include "codegen/nvrtc_compiler.h"

namespace kvcc::codegen {

struct BuiltKernel {
  RenderedKernel rendered;
  CompiledKernel compiled;
  std::string cache_key;
};

// `cache` may be null (always compile). A spec whose register cap was defaulted and that
// spills under it is rebuilt without the cap.
absl::StatusOr<BuiltKernel> BuildKernel(const KernelSpec& spec, KernelCache* cache);
// Exactly `spec` (defaults filled in), no fallback.
absl::StatusOr<BuiltKernel> BuildExactly(const KernelSpec& spec, KernelCache* cache);

// The target of GPU `device` as (compute capability, arch-specific): the H100 gives (90, true)
// so the kernels may use sm_90a. Fails when no GPU or driver is present.
struct GpuTarget {
  int arch = 0;
  bool arch_specific = false;
};
absl::StatusOr<GpuTarget> DetectGpuTarget(int device);

}  // namespace kvcc::codegen
