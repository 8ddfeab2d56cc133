#include "codegen/kivi_kernels.h"

#include "absl/strings/str_cat.h"
#include "codegen/kernel_templates.h"
#include "ir/status_macros.h"

namespace kvcc::codegen {
namespace {

std::string ArchName(const GpuTarget& t) {
  return absl::StrCat("sm_", t.arch, t.arch_specific ? "a" : "");
}

// Cache tokens the attention stages per step: 32, halved while its static shared memory
// exceeds 46 KiB (kernel_spec.cc's choice for the scalar prefill kernel whose tiles it runs).
int KvTile(const KiviKernelSpec& s) {
  int tile = 32;
  auto bytes = [&](int t) {
    return (kKiviQTile * s.head_dim + 2 * t * (s.head_dim + 1) + kKiviQTile * (t + 1) +
            4 * kKiviQTile) * 4;
  };
  while (tile > 4 && bytes(tile) > 46 * 1024) tile /= 2;
  return tile;
}

}  // namespace

std::string KiviKernelSpec::ToString() const {
  return absl::StrCat("kivi head_dim=", head_dim, " heads=", heads, " kv_heads=", kv_heads,
                      " block_size=", block_size, " io=", ir::DTypeName(io_dtype), " arch=",
                      ArchName(target));
}

const std::vector<std::string>& KiviKernelNames() {
  static const auto* names = new std::vector<std::string>{
      "kvcc_kivi_write", "kvcc_kivi_seal", "kvcc_kivi_reopen", "kvcc_kivi_attention"};
  return *names;
}

absl::StatusOr<std::string> RenderKiviKernels(const KiviKernelSpec& s) {
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("kivi kernels [", s.ToString(), "]: ", what));
  };
  if (s.head_dim < 2 || s.head_dim > 256 || s.head_dim % 2 != 0) {
    return bad("head_dim must be even and in [2, 256]");
  }
  if (s.heads <= 0 || s.kv_heads <= 0 || s.heads % s.kv_heads != 0) {
    return bad("heads must be a positive multiple of kv_heads");
  }
  if (s.block_size <= 0 || s.block_size > 1024) return bad("block_size must be in [1, 1024]");
  if (s.io_dtype != ir::DType::kF16 && s.io_dtype != ir::DType::kF32) {
    return bad("activations (io) must be f16 or f32");
  }
  if (s.target.arch < 70 || s.target.arch > 200) return bad("arch must be a compute capability");
  KVCC_RETURN_IF_ERROR(KernelTemplate("kivi_cache.cuh").status());
  std::string src = absl::StrCat("// kvcc generated kernels: ", s.ToString(), "\n");
  const std::pair<const char*, int> defines[] = {
      {"HEAD_DIM", s.head_dim},   {"HEADS", s.heads},
      {"KV_HEADS", s.kv_heads},   {"BLOCK_SIZE", s.block_size},
      {"CACHE_BITS", 4},          {"SCHEME", 3},
      {"IO_F16", s.io_dtype == ir::DType::kF16 ? 1 : 0},
      {"THREADS", kKiviThreads},  {"Q_TILE", kKiviQTile},
      {"KV_TILE", KvTile(s)},
  };
  for (const auto& [name, value] : defines) {
    absl::StrAppend(&src, "#define KVCC_", name, " ", value, "\n");
  }
  absl::StrAppend(&src, "#include \"kivi_cache.cuh\"\n");
  return src;
}

absl::StatusOr<BuiltKiviKernels> BuildKiviKernels(const KiviKernelSpec& spec, KernelStore* store) {
  BuiltKiviKernels built;
  KVCC_ASSIGN_OR_RETURN(built.source, RenderKiviKernels(spec));
  const std::string arch = ArchName(spec.target);
  KVCC_ASSIGN_OR_RETURN(
      CachedCompile compiled,
      CompileCached(absl::StrCat("kvcc_kivi_hd", spec.head_dim, "_", arch, ".cu"), built.source,
                    KiviKernelNames().back(), arch, store));
  built.compiled = std::move(compiled.compiled);
  built.cache_key = std::move(compiled.cache_key);
  return built;
}

}  // namespace kvcc::codegen
