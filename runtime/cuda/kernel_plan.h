// Every kernel the CUDA backend builds to run a module, enumerated without a GPU: the ops
// program and, per cache storage and head count, the attention set of CudaAttention. The
// backend derives its kernels through the same functions, so `kvcc compile` puts exactly the
// cubins a later run asks for into the artifact. Also what an artifact hands the backend: the
// store its kernels come from and the tuning to apply.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "codegen/kernel_builder.h"
#include "codegen/kernel_spec.h"
#include "codegen/kernel_store.h"
#include "codegen/ops_kernels.h"
#include "ir/kv_cache_scheme.h"
#include "ir/module.h"
#include "runtime/cuda/cuda_attention.h"
#include "runtime/cuda/kernel_tuning.h"
#include "runtime/kv_cache_layout.h"

namespace kvcc::runtime {

// CTA size of the ops kernels.
inline constexpr int kOpsKernelThreads = 256;

// "sm_90a" -> (90, arch-specific), "sm_80" -> (80, portable); errors name the text.
absl::StatusOr<codegen::GpuTarget> ParseGpuArch(absl::string_view name);
std::string GpuArchName(const codegen::GpuTarget& target);

// The storage and head counts of `config`, without the tile choices or the device:
// "heads=8 kv_heads=8 head_dim=32 block_size=64 cache=i8/per_layer io=f32".
std::string DecodeTuningKey(const CudaAttentionConfig& config);
// `config` with the tile choices and split buckets of `tuning` (when it has an entry).
void ApplyTuning(const KernelTuning& tuning, CudaAttentionConfig* config);

codegen::OpsKernelSpec OpsKernelSpecFor(const codegen::GpuTarget& target);
// The activation dtype of a CUDA backend that runs models (CreateBackend's, the benches'):
// what the attention kernels read and write (CudaBackend::SetHalfActivations), for 4-bit
// models too.
inline constexpr ir::DType kModelActivationDType = ir::DType::kF16;

// The attention kernels' configuration for one cache layer read with `heads` query heads, with
// q, k, v and the output in `io` (f16 or f32).
CudaAttentionConfig AttentionConfigFor(const KvCacheLayout& layout,
                                       const ir::KvCacheScheme& scheme, int heads, int device,
                                       ir::DType io = kModelActivationDType);

// The attention configurations the backend creates running `module` with cache blocks of
// `block_size` tokens: per distinct layer storage one for the cache write (heads = kv_heads)
// and one per head count of the attention nodes, each with `tuning` applied.
absl::StatusOr<std::vector<CudaAttentionConfig>> PlanAttentionConfigs(
    const ir::Module& module, int block_size, const KernelTuning& tuning);

struct PlannedKernel {
  bool ops = false;
  bool w4 = false;                   // the W4A16 program (codegen/w4_kernels.h) for w4_target
  codegen::KernelSpec spec;          // when !ops && !w4
  codegen::OpsKernelSpec ops_spec;   // when ops
  codegen::GpuTarget w4_target;      // when w4
  std::string Key() const;           // the spec's canonical text
  std::string ArchName() const;
  std::string EntryPoint() const;    // the entry point whose resources are reported
  std::string Program() const;       // "kvcc_ops", "kvcc_decode_attention", ...
};

// Every kernel for every target, deduplicated, in a stable order (the W4A16 program when a
// linear holds a 4-bit weight).
absl::StatusOr<std::vector<PlannedKernel>> PlanKernels(
    const ir::Module& module, int block_size, const KernelTuning& tuning,
    const std::vector<codegen::GpuTarget>& targets);

// Builds `kernel` through `store` as the backend does (BuildKernel, BuildOpsKernels).
absl::StatusOr<codegen::CompiledKernel> BuildPlanned(const PlannedKernel& kernel,
                                                     codegen::KernelStore* store);

// Where the CUDA backend takes its kernels from.
struct CudaKernelSource {
  std::shared_ptr<codegen::KernelStore> store;  // null: the on-disk kernel cache
  std::shared_ptr<const KernelTuning> tuning;   // null: the heuristics
};

// `source` for device `device_name`: tuning measured on another device kind is dropped with a
// warning on stderr (the heuristics apply).
CudaKernelSource SourceForDevice(CudaKernelSource source, const std::string& device_name);

}  // namespace kvcc::runtime
