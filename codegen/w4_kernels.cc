#include "codegen/w4_kernels.h"

#include "absl/strings/str_cat.h"
#include "codegen/kernel_templates.h"
#include "ir/status_macros.h"

namespace kvcc::codegen {
namespace {

std::string ArchName(const GpuTarget& t) {
  return absl::StrCat("sm_", t.arch, t.arch_specific ? "a" : "");
}

}  // namespace

const std::vector<std::string>& W4KernelNames() {
  static const auto* names = new std::vector<std::string>{
      "kvcc_w4_gemv",      "kvcc_w4_dequant_f16", "kvcc_w4_mma_n1",     "kvcc_w4_mma_n2",
      "kvcc_w4_mma_n4",    "kvcc_w4_mma_n8",      "kvcc_w4_fill",       "kvcc_w4_repack",
      "kvcc_w4_unpack_f16", "kvcc_w4_stream_n1_s1", "kvcc_w4_stream_n1_s2",
      "kvcc_w4_stream_n2_s1", "kvcc_w4_stream_n2_s2", "kvcc_w4_stream_n1_s1_h",
      "kvcc_w4_stream_n1_s2_h", "kvcc_w4_stream_n2_s1_h", "kvcc_w4_stream_n2_s2_h",
      "kvcc_w4_stream_n1_s1_hz", "kvcc_w4_stream_n1_s2_hz", "kvcc_w4_stream_n2_s1_hz",
      "kvcc_w4_stream_n2_s2_hz", "kvcc_w4_mma_n1_h", "kvcc_w4_mma_n2_h", "kvcc_w4_mma_n4_h",
      "kvcc_w4_mma_n8_h", "kvcc_w4_stripe_n1", "kvcc_w4_stripe_n2", "kvcc_w4_stripe_n1_z",
      "kvcc_w4_stripe_n2_z"};
  return *names;
}

absl::StatusOr<std::string> RenderW4Kernels(const GpuTarget& target) {
  if (target.arch < 80 || target.arch > 200) {
    return absl::InvalidArgumentError(absl::StrCat(
        "w4 kernels for ", ArchName(target), ": arch must be a compute capability >= 80"));
  }
  KVCC_RETURN_IF_ERROR(KernelTemplate("w4_gemv.cuh").status());
  KVCC_RETURN_IF_ERROR(KernelTemplate("w4_mma.cuh").status());
  KVCC_RETURN_IF_ERROR(KernelTemplate("w4_stream.cuh").status());
  KVCC_RETURN_IF_ERROR(KernelTemplate("w4_stripe.cuh").status());
  return absl::StrCat("// kvcc generated W4A16 kernels for ", ArchName(target), "\n",
                      "#define KVCC_W4_TOKENS ", kW4GemvTokens, "\n",
                      "#include \"w4_gemv.cuh\"\n#include \"w4_mma.cuh\"\n",
                      "#include \"w4_stream.cuh\"\n#include \"w4_stripe.cuh\"\n");
}

absl::StatusOr<BuiltW4Kernels> BuildW4Kernels(const GpuTarget& target, KernelStore* cache) {
  BuiltW4Kernels built;
  KVCC_ASSIGN_OR_RETURN(built.source, RenderW4Kernels(target));
  const std::string arch = ArchName(target);
  KVCC_ASSIGN_OR_RETURN(CachedCompile compiled,
                        CompileCached(absl::StrCat("kvcc_w4_", arch, ".cu"), built.source,
                                      W4KernelNames()[0], arch, cache));
  built.compiled = std::move(compiled.compiled);
  built.cache_key = std::move(compiled.cache_key);
  return built;
}

}  // namespace kvcc::codegen
