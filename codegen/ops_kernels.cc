#include "codegen/ops_kernels.h"

#include "absl/strings/str_cat.h"
#include "codegen/kernel_builder.h"
#include "codegen/kernel_templates.h"
#include "ir/status_macros.h"

namespace kvcc::codegen {
namespace {

// Each includes ops_common.cuh itself.
constexpr const char* kOpsTemplates[] = {"ops_elementwise.cuh", "ops_rmsnorm.cuh",
                                         "ops_random.cuh", "ops_sample.cuh",
                                         "ops_probe.cuh", "ops_reduce.cuh",
                                         "ops_gemv.cuh"};

}  // namespace

std::string OpsKernelSpec::ArchName() const {
  return absl::StrCat("sm_", arch, arch_specific ? "a" : "");
}

std::string OpsKernelSpec::ToString() const {
  return absl::StrCat("ops threads=", threads, " arch=", ArchName());
}

int GemvVariant::max_tokens() const { return small ? kGemvMaxTokens : 8 * token_tiles; }

std::string GemvVariant::Suffix() const {
  return small ? "small" : absl::StrCat("n", token_tiles, "_s", strips, "_d", depth);
}

const std::vector<GemvVariant>& GemvVariants() {
  static const auto* variants = new std::vector<GemvVariant>{
      {1, 1, 2, false}, {1, 1, 3, false}, {2, 1, 3, false}, {2, 1, 1, true}};
  return *variants;
}

const std::vector<std::string>& OpsKernelNames() {
  static const auto* names = new std::vector<std::string>([] {
    std::vector<std::string> v = {
      "kvcc_cast_f32_f16",   "kvcc_cast_f32_bf16",  "kvcc_cast_f16_f32",
      "kvcc_cast_bf16_f32",  "kvcc_cast_f16_bf16",  "kvcc_cast_bf16_f16",
      "kvcc_embedding_f32",  "kvcc_embedding_f16",
      "kvcc_embedding_bf16", "kvcc_add_bias_f32",   "kvcc_add_bias_f16",
      "kvcc_add_bias_bf16",  "kvcc_add_bias_f32_h", "kvcc_add_bias_f16_h",
      "kvcc_add_bias_bf16_h", "kvcc_add",           "kvcc_add_hs",
      "kvcc_add_sh",         "kvcc_add_hh",         "kvcc_silu_mul",
      "kvcc_silu_mul_f16",   "kvcc_gather_rows",    "kvcc_gather_rows_f16",
      "kvcc_rotary",         "kvcc_rotary_f16",     "kvcc_rms_norm_f32",
      "kvcc_rms_norm_f16",   "kvcc_rms_norm_bf16",  "kvcc_rms_norm_f32_h",
      "kvcc_rms_norm_f16_h", "kvcc_rms_norm_bf16_h", "kvcc_add_rms_norm_f32",
      "kvcc_add_rms_norm_f16", "kvcc_add_rms_norm_bf16", "kvcc_add_rms_norm_f32_h",
      "kvcc_add_rms_norm_f16_h", "kvcc_add_rms_norm_bf16_h", "kvcc_add_rms_norm_f32_sh",
      "kvcc_add_rms_norm_f16_sh", "kvcc_add_rms_norm_bf16_sh", "kvcc_fill_normal_f32",
      "kvcc_fill_normal_f16", "kvcc_fill_normal_bf16", "kvcc_sample", "kvcc_target_nll", "kvcc_read_probe",
      "kvcc_column_ranges"};
    for (const GemvVariant& g : GemvVariants()) {
      for (const char* w : {"f16", "bf16"}) v.push_back(absl::StrCat("kvcc_gemv_", w, "_", g.Suffix()));
    }
    return v;
  }());
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
                                 "#define KVCC_OPS_THREADS ", spec.threads, "\n");
  for (const char* name : kOpsTemplates) {
    KVCC_RETURN_IF_ERROR(KernelTemplate(name).status());
    absl::StrAppend(&src, "#include \"", name, "\"\n");
  }
  return src;
}

absl::StatusOr<BuiltOpsKernels> BuildOpsKernels(const OpsKernelSpec& spec, KernelStore* cache) {
  BuiltOpsKernels built;
  KVCC_ASSIGN_OR_RETURN(built.source, RenderOpsKernels(spec));
  const std::string arch = spec.ArchName();
  KVCC_ASSIGN_OR_RETURN(CachedCompile compiled,
                        CompileCached(absl::StrCat("kvcc_ops_", arch, ".cu"), built.source,
                                      OpsKernelNames()[0], arch, cache));
  built.compiled = std::move(compiled.compiled);
  built.cache_key = std::move(compiled.cache_key);
  return built;
}

}  // namespace kvcc::codegen
