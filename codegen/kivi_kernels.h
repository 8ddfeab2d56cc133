// The int4-kivi kernels (codegen/kivi_cache.cuh: cache write, block seal and reopen, attention)
// rendered for one cache shape into one NVRTC program and compiled through a kernel store (the
// on-disk cache or an artifact's kernels), like the W4 and ops kernels.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "codegen/kernel_builder.h"
#include "codegen/kernel_store.h"
#include "codegen/nvrtc_compiler.h"
#include "ir/dtype.h"

namespace kvcc::codegen {

// CTA size of the write and attention kernels, and query rows per attention CTA.
inline constexpr int kKiviThreads = 128;
inline constexpr int kKiviQTile = 16;

struct KiviKernelSpec {
  int head_dim = 128;
  int heads = 32;
  int kv_heads = 32;
  int block_size = 64;
  ir::DType io_dtype = ir::DType::kF32;  // q, k, v, out: f16 | f32
  GpuTarget target;
  std::string ToString() const;
};

struct BuiltKiviKernels {
  std::string source;
  CompiledKernel compiled;  // one cubin holding every entry point of KiviKernelNames()
  std::string cache_key;
};

// kvcc_kivi_write, kvcc_kivi_seal, kvcc_kivi_reopen, kvcc_kivi_attention (the last one's
// ptxas report is the compile's).
const std::vector<std::string>& KiviKernelNames();

// The rendered source; errors name the field of `spec` out of range.
absl::StatusOr<std::string> RenderKiviKernels(const KiviKernelSpec& spec);

// Renders, looks up `store` (may be null) and compiles on a miss.
absl::StatusOr<BuiltKiviKernels> BuildKiviKernels(const KiviKernelSpec& spec, KernelStore* store);

}  // namespace kvcc::codegen
