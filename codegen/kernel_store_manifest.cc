#include "codegen/kernel_store_manifest.h"

#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "ir/artifact_manifest.h"
#include "ir/json_reader.h"
#include "ir/status_macros.h"

namespace kvcc::codegen {
namespace {

constexpr char kFormat[] = "kvcc-kernels";
constexpr int kVersion = 1;

bool IsHex64(absl::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// A file directly inside kernels/: no directory part, no "." or "..", printable ASCII.
bool IsPlainFileName(absl::string_view s) {
  if (s.empty() || s.size() > 200 || s == "." || s == "..") return false;
  for (char c : s) {
    if (c == '/' || c == '\\' || c <= ' ' || c > '~') return false;
  }
  return true;
}

}  // namespace

std::string KernelManifestToJson(const KernelManifest& m) {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const StoredKernel& k : m.kernels) {
    list.push_back({{"key", k.key},
                    {"spec", k.spec},
                    {"arch", k.arch},
                    {"entry", k.entry},
                    {"cubin", k.cubin_file},
                    {"cubin_sha256", k.cubin_sha256},
                    {"log", k.log_file},
                    {"log_sha256", k.log_sha256},
                    {"registers", k.registers},
                    {"spill_store_bytes", k.spill_store_bytes},
                    {"spill_load_bytes", k.spill_load_bytes}});
  }
  nlohmann::ordered_json j = {{"format", kFormat},
                              {"version", kVersion},
                              {"nvrtc_version", m.nvrtc_version},
                              {"kernels", list}};
  return j.dump(1) + "\n";
}

absl::StatusOr<KernelManifest> ParseKernelManifest(absl::string_view text,
                                                   const std::string& source) {
  KVCC_ASSIGN_OR_RETURN(ir::Json j, ir::ParseArtifactJson(text, source, kFormat, kVersion, 6,
                                                          1 << 24));
  ir::JsonReader top(j, source);
  KernelManifest m;
  KVCC_ASSIGN_OR_RETURN(m.nvrtc_version, top.String("nvrtc_version"));
  if (!top.Has("kernels") || !top.At("kernels").is_array()) {
    return top.Missing("kernels", "an array of kernel entries");
  }
  const ir::Json& list = top.At("kernels");
  std::set<std::string> keys, files;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string path = absl::StrCat("kernels[", i, "].");
    if (!list[i].is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": ", path, " is not an object"));
    }
    ir::JsonReader e(list[i], source, path);
    StoredKernel k;
    KVCC_ASSIGN_OR_RETURN(k.key, e.String("key"));
    if (!IsHex64(k.key)) return e.Bad("key", e.At("key"), "64 lowercase hex digits");
    if (!keys.insert(k.key).second) return e.Bad("key", e.At("key"), "a key not listed before");
    KVCC_ASSIGN_OR_RETURN(k.spec, e.String("spec"));
    KVCC_ASSIGN_OR_RETURN(k.arch, e.String("arch"));
    KVCC_ASSIGN_OR_RETURN(k.entry, e.String("entry"));
    for (auto [key, file, digest, digest_key] :
         {std::tuple{"cubin", &k.cubin_file, &k.cubin_sha256, "cubin_sha256"},
          std::tuple{"log", &k.log_file, &k.log_sha256, "log_sha256"}}) {
      KVCC_ASSIGN_OR_RETURN(*file, e.String(key));
      if (!IsPlainFileName(*file)) {
        return e.Bad(key, e.At(key), "a plain file name inside kernels/");
      }
      if (!files.insert(*file).second) return e.Bad(key, e.At(key), "a file not listed before");
      KVCC_ASSIGN_OR_RETURN(*digest, e.String(digest_key));
      if (!IsHex64(*digest)) return e.Bad(digest_key, e.At(digest_key), "64 lowercase hex digits");
    }
    KVCC_ASSIGN_OR_RETURN(int64_t regs, e.Int("registers", -1, 65536));
    KVCC_ASSIGN_OR_RETURN(int64_t stores, e.Int("spill_store_bytes", 0, 1 << 30));
    KVCC_ASSIGN_OR_RETURN(int64_t loads, e.Int("spill_load_bytes", 0, 1 << 30));
    k.registers = static_cast<int>(regs);
    k.spill_store_bytes = static_cast<int>(stores);
    k.spill_load_bytes = static_cast<int>(loads);
    m.kernels.push_back(std::move(k));
  }
  return m;
}

}  // namespace kvcc::codegen
