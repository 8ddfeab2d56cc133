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

// One way to run the decode GEMV (codegen/ops_gemv.cuh): up to 8 x token_tiles tokens,
// `strips` 16-row strips per CTA of kGemvThreads threads, `depth` chunks in flight per lane;
// one CTA per strip group, or (persistent) as many as the SMs hold at once, each looping.
struct GemvVariant {
  int token_tiles;
  int strips;
  int depth;
  bool persistent;
  int max_tokens() const { return 8 * token_tiles; }
  // "n1_s1_d4": the entry points are kvcc_gemv_f16_<entry> and kvcc_gemv_bf16_<entry>.
  std::string Entry() const;
  // The entry, plus "_p" when persistent: the variant's name in benches and tuning.json.
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
