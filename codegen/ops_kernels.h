// The CUDA backend's non-attention kernels (codegen/ops_*.cuh: casts, embedding, RMSNorm,
// residual add, residual add fused with RMSNorm, SiLU * up, bias, row gather, rotary, seeded
// random fill, next-token sampling, a read-bandwidth probe, the decode GEMV) rendered into one NVRTC program per target and compiled through the kernel
// cache, so a process compiles them once and later processes load the cached cubin.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "codegen/kernel_cache.h"
#include "codegen/nvrtc_compiler.h"

namespace kvcc::codegen {

struct OpsKernelSpec {
  int threads = 256;  // CTA size of every ops kernel (a multiple of 32, <= 1024)
  int arch = 90;
  bool arch_specific = false;

  std::string ArchName() const;
  std::string ToString() const;
};

struct BuiltOpsKernels {
  std::string source;
  CompiledKernel compiled;  // one cubin holding every entry point below; the log has the
                            // ptxas report of each, cached or not
  std::string cache_key;
};

// One instantiation of the decode GEMV (codegen/ops_gemv.cuh): the tensor-core kernel for up to
// 8 x token_tiles tokens, `strips` 16-row strips per CTA of kGemvThreads threads, `depth`
// chunks in flight per lane; or `small`, the scalar kernel for small weights of any shape.
struct GemvVariant {
  int token_tiles = 2;
  int strips = 1;
  int depth = 1;
  bool small = false;
  int max_tokens() const;
  // "n1_s1_d3" or "small": the entry points are kvcc_gemv_f16_<suffix> and _bf16_<suffix>,
  // and tuning.json names the variant so.
  std::string Suffix() const;
};
inline constexpr int kGemvThreads = 256;
inline constexpr int kGemvMaxTokens = 16;
// Every instantiated variant, in the order of the entry points in ops_gemv.cuh.
const std::vector<GemvVariant>& GemvVariants();

// Entry points of the ops program, for checks and resource reports.
const std::vector<std::string>& OpsKernelNames();

// The rendered source (the #define of the CTA size and the ops templates' #includes); errors
// name the bad field.
absl::StatusOr<std::string> RenderOpsKernels(const OpsKernelSpec& spec);

// Renders, looks up `cache` (may be null) and compiles on a miss.
absl::StatusOr<BuiltOpsKernels> BuildOpsKernels(const OpsKernelSpec& spec, KernelStore* cache);

}  // namespace kvcc::codegen
