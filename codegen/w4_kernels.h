// The W4A16 kernels (codegen/w4_mma.cuh: repacking, the tensor-core linear and the packed f16
// unpack; codegen/w4_gemv.cuh: the GEMV and f16 dequantization of weights the packed layout
// cannot take) rendered into one NVRTC program per target and compiled through a kernel store
// (the on-disk cache or an artifact's kernels), like the ops kernels.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "codegen/kernel_builder.h"
#include "codegen/kernel_store.h"
#include "codegen/nvrtc_compiler.h"

namespace kvcc::codegen {

// Tokens one GEMV CTA row computes (KVCC_W4_TOKENS) and output rows per CTA (KVCC_W4_WARPS):
// the host sizes its grid with them.
inline constexpr int kW4GemvTokens = 16;
inline constexpr int kW4GemvRows = 8;
inline constexpr int kW4Threads = kW4GemvRows * 32;

struct BuiltW4Kernels {
  std::string source;
  CompiledKernel compiled;  // one cubin holding every entry point of W4KernelNames()
  std::string cache_key;
};

const std::vector<std::string>& W4KernelNames();

// The rendered source for `target` (an arch below 80 is an error: the f16 conversions need it).
absl::StatusOr<std::string> RenderW4Kernels(const GpuTarget& target);

// Renders, looks up `store` (may be null) and compiles on a miss.
absl::StatusOr<BuiltW4Kernels> BuildW4Kernels(const GpuTarget& target, KernelStore* store);

}  // namespace kvcc::codegen
