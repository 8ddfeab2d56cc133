#include "runtime/cuda/kernel_plan.h"

#include <cstdio>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "codegen/w4_kernels.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"
#include "runtime/kv_cache.h"

namespace kvcc::runtime {

absl::StatusOr<codegen::GpuTarget> ParseGpuArch(absl::string_view name) {
  absl::string_view rest = name;
  codegen::GpuTarget t;
  int arch = 0;
  if (absl::ConsumePrefix(&rest, "sm_")) {
    t.arch_specific = absl::ConsumeSuffix(&rest, "a");
    if (!absl::SimpleAtoi(rest, &arch)) arch = 0;
  }
  if (arch < 80 || arch > 200 || (t.arch_specific && arch < 90)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GPU arch '", name, "': expected sm_<compute capability> from sm_80 on, with an 'a' "
        "suffix for the arch-specific target from sm_90a on (sm_80, sm_86, sm_90a)"));
  }
  t.arch = arch;
  return t;
}

std::string GpuArchName(const codegen::GpuTarget& t) {
  return absl::StrCat("sm_", t.arch, t.arch_specific ? "a" : "");
}

codegen::OpsKernelSpec OpsKernelSpecFor(const codegen::GpuTarget& target) {
  codegen::OpsKernelSpec spec;
  spec.threads = kOpsKernelThreads;
  spec.arch = target.arch;
  spec.arch_specific = target.arch_specific;
  return spec;
}

CudaAttentionConfig AttentionConfigFor(const KvCacheLayout& layout,
                                       const ir::KvCacheScheme& scheme, int heads, int device,
                                       ir::DType io) {
  CudaAttentionConfig config;
  config.heads = heads;
  config.kv_heads = layout.kv_heads;
  config.head_dim = layout.head_dim;
  config.block_size = layout.block_size;
  config.SetStorage(scheme);
  config.io_dtype = io;
  config.device = device;
  return config;
}

absl::StatusOr<std::vector<CudaAttentionConfig>> PlanAttentionConfigs(
    const ir::Module& module, int block_size, const KernelTuning& tuning) {
  KVCC_ASSIGN_OR_RETURN(KvCacheSpec cache, KvCacheSpecFromModule(module, block_size, 1));
  std::set<int64_t> heads = {cache.layout.kv_heads};
  for (const auto& node : module.graph.nodes()) {
    if (node->op != ir::op::kAttention) continue;
    KVCC_ASSIGN_OR_RETURN(int64_t h, node->Int("heads"));
    heads.insert(h);
  }
  std::vector<CudaAttentionConfig> configs;
  std::set<std::string> seen;
  const ir::DType io = kModelActivationDType;
  for (const ir::KvCacheScheme& scheme : cache.schemes) {
    for (int64_t h : heads) {
      CudaAttentionConfig c =
          AttentionConfigFor(cache.layout, scheme, static_cast<int>(h), 0, io);
      ApplyTuning(tuning, &c);
      if (seen.insert(DecodeTuningKey(c)).second) configs.push_back(std::move(c));
    }
  }
  return configs;
}

std::string DecodeTuningKey(const CudaAttentionConfig& c) {
  auto name = [](ir::KvStorage s) {
    return absl::StrCat(ir::DTypeName(s.dtype), "/", ir::KvGranularityName(s.granularity));
  };
  return absl::StrCat("heads=", c.heads, " kv_heads=", c.kv_heads, " head_dim=", c.head_dim,
                      " block_size=", c.block_size, " cache=", name(c.k()),
                      c.v() != c.k() ? absl::StrCat("+", name(c.v())) : std::string(),
                      " io=", ir::DTypeName(c.io_dtype));
}

void ApplyTuning(const KernelTuning& tuning, CudaAttentionConfig* config) {
  const DecodeTuning* d = tuning.Find(DecodeTuningKey(*config));
  if (d == nullptr) return;
  config->decode_threads = d->threads;
  config->decode_vec_bytes = d->vec_bytes;
  config->decode_unroll = d->unroll;
  config->decode_splits.clear();
  for (const TunedBucket& b : d->buckets) config->decode_splits.push_back(b.bucket);
}

std::string PlannedKernel::Key() const {
  if (w4) return absl::StrCat("w4 arch=", GpuArchName(w4_target));
  return ops ? ops_spec.ToString() : spec.ToString();
}

std::string PlannedKernel::ArchName() const {
  if (w4) return GpuArchName(w4_target);
  return ops ? ops_spec.ArchName() : spec.ArchName();
}

std::string PlannedKernel::EntryPoint() const {
  if (w4) return codegen::W4KernelNames()[0];
  return ops ? codegen::OpsKernelNames()[0] : absl::StrCat("kvcc_", codegen::KernelOpName(spec.op));
}

std::string PlannedKernel::Program() const {
  if (w4) return "kvcc_w4";
  return ops ? "kvcc_ops" : absl::StrCat("kvcc_", codegen::KernelOpName(spec.op));
}

absl::StatusOr<std::vector<PlannedKernel>> PlanKernels(
    const ir::Module& module, int block_size, const KernelTuning& tuning,
    const std::vector<codegen::GpuTarget>& targets) {
  KVCC_ASSIGN_OR_RETURN(std::vector<CudaAttentionConfig> configs,
                        PlanAttentionConfigs(module, block_size, tuning));
  bool w4 = false;
  for (const auto& node : module.graph.nodes()) {
    w4 = w4 || (node->op == ir::op::kLinear && node->IntOr("group_size", 0) > 0);
  }
  std::vector<PlannedKernel> plan;
  std::set<std::string> seen;
  for (const codegen::GpuTarget& target : targets) {
    PlannedKernel ops;
    ops.ops = true;
    ops.ops_spec = OpsKernelSpecFor(target);
    if (seen.insert(ops.Key()).second) plan.push_back(ops);
    if (w4) {
      PlannedKernel k;
      k.w4 = true;
      k.w4_target = target;
      if (seen.insert(k.Key()).second) plan.push_back(std::move(k));
    }
    for (const CudaAttentionConfig& c : configs) {
      for (const codegen::KernelSpec& spec : CudaAttention::KernelSpecs(c, target)) {
        PlannedKernel k;
        k.spec = spec;
        if (seen.insert(k.Key()).second) plan.push_back(std::move(k));
      }
    }
  }
  return plan;
}

absl::StatusOr<codegen::CompiledKernel> BuildPlanned(const PlannedKernel& kernel,
                                                     codegen::KernelStore* store) {
  if (kernel.w4) {
    KVCC_ASSIGN_OR_RETURN(codegen::BuiltW4Kernels built,
                          codegen::BuildW4Kernels(kernel.w4_target, store));
    return std::move(built.compiled);
  }
  if (kernel.ops) {
    KVCC_ASSIGN_OR_RETURN(codegen::BuiltOpsKernels built,
                          codegen::BuildOpsKernels(kernel.ops_spec, store));
    return std::move(built.compiled);
  }
  KVCC_ASSIGN_OR_RETURN(codegen::BuiltKernel built, codegen::BuildKernel(kernel.spec, store));
  return std::move(built.compiled);
}

CudaKernelSource SourceForDevice(CudaKernelSource source, const std::string& device_name) {
  if (source.tuning != nullptr && !source.tuning->device.empty() &&
      source.tuning->device != device_name) {
    std::fprintf(stderr,
                 "kvcc: warning: %s was tuned on %s, this is %s: using the heuristic kernel "
                 "configurations instead (re-run `kvcc compile --autotune` on this GPU)\n",
                 kTuningFileName, source.tuning->device.c_str(), device_name.c_str());
    source.tuning = nullptr;
  }
  return source;
}

}  // namespace kvcc::runtime
