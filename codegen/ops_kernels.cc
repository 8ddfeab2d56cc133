#include "codegen/ops_kernels.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "codegen/kernel_templates.h"

namespace kvcc::codegen {
namespace {

// Order matters: common helpers first, then the templates that use them.
constexpr const char* kOpsTemplates[] = {"ops_common.cuh", "ops_elementwise.cuh",
                                         "ops_rmsnorm.cuh", "ops_random.cuh"};

}  // namespace

std::string OpsKernelSpec::ArchName() const {
  return absl::StrCat("sm_", arch, arch_specific ? "a" : "");
}

std::string OpsKernelSpec::ToString() const {
  return absl::StrCat("ops threads=", threads, " arch=", ArchName());
}

const std::vector<std::string>& OpsKernelNames() {
  static const auto* names = new std::vector<std::string>{
      "kvcc_cast_f32_f16",   "kvcc_cast_f32_bf16",  "kvcc_cast_f16_f32",
      "kvcc_cast_bf16_f32",  "kvcc_embedding_f32",  "kvcc_embedding_f16",
      "kvcc_embedding_bf16", "kvcc_add_bias_f32",   "kvcc_add_bias_f16",
      "kvcc_add_bias_bf16",  "kvcc_add",            "kvcc_silu_mul",
      "kvcc_gather_rows",    "kvcc_rotary",         "kvcc_rms_norm_f32",
      "kvcc_rms_norm_f16",   "kvcc_rms_norm_bf16",  "kvcc_add_rms_norm_f32",
      "kvcc_add_rms_norm_f16", "kvcc_add_rms_norm_bf16", "kvcc_fill_normal_f32",
      "kvcc_fill_normal_f16", "kvcc_fill_normal_bf16"};
  return *names;
}

absl::StatusOr<std::string> RenderOpsKernels(const OpsKernelSpec& spec) {
  if (spec.threads < 32 || spec.threads > 1024 || spec.threads % 32 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ops kernel spec [", spec.ToString(), "]: threads must be a multiple of 32 in [32, 1024]"));
  }
  if (spec.arch < 80 || spec.arch > 200) {
    // bf16 conversion instructions (cvt.rn.bf16.f32) need sm_80.
    return absl::InvalidArgumentError(absl::StrCat(
        "ops kernel spec [", spec.ToString(), "]: arch must be a compute capability >= 80"));
  }
  std::string src = absl::StrCat("// kvcc generated ops kernels: ", spec.ToString(), "\n",
                                 "namespace kvcc_ops_spec {\nconstexpr int kThreads = ",
                                 spec.threads, ";\n}  // namespace kvcc_ops_spec\n");
  for (const char* name : kOpsTemplates) {
    absl::StatusOr<absl::string_view> text = KernelTemplate(name);
    if (!text.ok()) return text.status();
    absl::StrAppend(&src, "#line 1 \"", name, "\"\n", *text, "\n");
  }
  return src;
}

absl::StatusOr<BuiltOpsKernels> BuildOpsKernels(const OpsKernelSpec& spec, KernelCache* cache) {
  absl::StatusOr<std::string> source = RenderOpsKernels(spec);
  if (!source.ok()) return source.status();
  BuiltOpsKernels built;
  built.source = *std::move(source);
  const std::string arch = spec.ArchName();
  built.cache_key = KernelCache::Key(built.source, absl::StrJoin(NvrtcOptions(arch), " "), arch,
                                     NvrtcVersion());
  if (cache != nullptr) {
    absl::StatusOr<std::optional<std::string>> hit = cache->Lookup(built.cache_key);
    if (!hit.ok()) return hit.status();
    if (hit->has_value() && !(*hit)->empty()) {
      built.compiled.cubin = **hit;
      built.compiled.from_cache = true;
      return built;
    }
  }
  absl::StatusOr<CompiledKernel> compiled =
      CompileCuda(absl::StrCat("kvcc_ops_", arch, ".cu"), built.source, OpsKernelNames()[0], arch);
  if (!compiled.ok()) return compiled.status();
  built.compiled = *std::move(compiled);
  if (cache != nullptr) {
    // An unwritable cache costs a recompile next time, not this run.
    (void)cache->Store(built.cache_key, built.compiled.cubin);
  }
  return built;
}

}  // namespace kvcc::codegen
