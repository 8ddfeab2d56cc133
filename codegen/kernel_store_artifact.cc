#include "codegen/kernel_store_artifact.h"

#include <cstdio>
#include <filesystem>
#include <set>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "codegen/sha256.h"
#include "ir/atomic_file.h"
#include "ir/file_read.h"
#include "ir/status_macros.h"

namespace kvcc::codegen {
namespace {

constexpr int64_t kMaxKernelFileBytes = int64_t{1} << 28;
constexpr char kRecompile[] = " (re-run `kvcc compile` to rebuild the artifact)";

}  // namespace

absl::StatusOr<std::string> ReadStoredFile(const std::string& kernels_dir,
                                           const std::string& file,
                                           const std::string& sha256_hex) {
  const std::string path = absl::StrCat(kernels_dir, "/", file);
  KVCC_ASSIGN_OR_RETURN(std::string bytes,
                        ir::ReadRegularFile(path, kMaxKernelFileBytes, "artifact kernel file"));
  const std::string got = Sha256Hex(bytes);
  if (got != sha256_hex) {
    return absl::DataLossError(absl::StrCat(path, " has sha256 ", got, " but ", kernels_dir, "/",
                                            kKernelManifestName, " records ", sha256_hex,
                                            ": the file is damaged or edited", kRecompile));
  }
  return bytes;
}

absl::StatusOr<std::shared_ptr<ArtifactKernelStore>> ArtifactKernelStore::Open(
    const std::string& kernels_dir, std::shared_ptr<KernelStore> fallback, bool allow_jit,
    const std::string& present_arch) {
  const std::string manifest_path = absl::StrCat(kernels_dir, "/", kKernelManifestName);
  KVCC_ASSIGN_OR_RETURN(std::string text, ir::ReadRegularFile(manifest_path, 1 << 24,
                                                              "artifact kernel manifest"));
  std::shared_ptr<ArtifactKernelStore> store(new ArtifactKernelStore());
  KVCC_ASSIGN_OR_RETURN(store->manifest_, ParseKernelManifest(text, manifest_path));
  store->dir_ = kernels_dir;
  store->fallback_ = std::move(fallback);
  store->allow_jit_ = allow_jit;
  store->present_arch_ = present_arch;
  store->nvrtc_at_open_ = NvrtcCompileCount();
  std::set<std::string> arches;
  for (const StoredKernel& k : store->manifest_.kernels) {
    store->by_key_[k.key] = &k;
    arches.insert(k.arch);
  }
  if (!present_arch.empty() && arches.count(present_arch) == 0) {
    const std::string problem =
        absl::StrCat("has no kernels for this GPU's ", present_arch, " (it has ",
                     arches.empty() ? "none" : absl::StrJoin(arches, ", "), ")");
    if (!allow_jit) {
      return absl::FailedPreconditionError(absl::StrCat(
          manifest_path, " ", problem, ", and --no-jit forbids compiling kernels (run `kvcc ",
          "compile --arch ", present_arch, "`)"));
    }
    std::fprintf(stderr, "kvcc: warning: %s %s: compiling its kernels with NVRTC (`kvcc "
                 "compile --arch %s` avoids this)\n",
                 manifest_path.c_str(), problem.c_str(), present_arch.c_str());
  }
  return store;
}

ArtifactKernelStore::~ArtifactKernelStore() {
  if (from_artifact_ + from_fallback_ > 0 || compiled() > 0) {
    std::fprintf(stderr, "kvcc: %s\n", Summary().c_str());
  }
}

std::string ArtifactKernelStore::Summary() const {
  return absl::StrCat("kernels: ", from_artifact_.load(), " from artifact, ",
                      from_fallback_.load(), " from cache, ", compiled(), " compiled (NVRTC)");
}

absl::StatusOr<std::optional<std::string>> ArtifactKernelStore::Lookup(absl::string_view key) {
  auto it = by_key_.find(std::string(key));
  if (it != by_key_.end()) {
    const StoredKernel& k = *it->second;
    CompiledKernel compiled;
    KVCC_ASSIGN_OR_RETURN(compiled.cubin, ReadStoredFile(dir_, k.cubin_file, k.cubin_sha256));
    KVCC_ASSIGN_OR_RETURN(compiled.log, ReadStoredFile(dir_, k.log_file, k.log_sha256));
    ++from_artifact_;
    return std::optional<std::string>(EncodeKernelPayload(compiled));
  }
  if (!allow_jit_) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir_, "/", kKernelManifestName, " has no kernel with cache key ", key,
        " (a kernel this run needs on ", present_arch_.empty() ? "this GPU" : present_arch_,
        "; compiled for another shape or tuning?) and --no-jit forbids compiling it"));
  }
  if (fallback_ == nullptr) return std::optional<std::string>();
  KVCC_ASSIGN_OR_RETURN(std::optional<std::string> hit, fallback_->Lookup(key));
  if (hit.has_value()) ++from_fallback_;
  return hit;
}

absl::Status ArtifactKernelStore::Store(absl::string_view key, absl::string_view payload) {
  if (fallback_ == nullptr) return absl::OkStatus();
  return fallback_->Store(key, payload);
}

absl::Status WriteKernelDir(const std::string& kernels_dir,
                            const std::vector<KernelToStore>& kernels) {
  std::error_code ec;
  std::filesystem::create_directories(kernels_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", kernels_dir, ": ", ec.message()));
  }
  KernelManifest m;
  m.nvrtc_version = NvrtcVersion();
  for (const KernelToStore& k : kernels) {
    StoredKernel s;
    s.key = k.key;
    s.spec = k.spec;
    s.arch = k.arch;
    s.entry = k.entry;
    const std::string stem = absl::StrCat(k.program.empty() ? k.entry : k.program, "_", k.arch,
                                          "_", k.key.substr(0, 16));
    s.cubin_file = stem + ".cubin";
    s.log_file = stem + ".log";
    s.cubin_sha256 = Sha256Hex(k.compiled.cubin);
    s.log_sha256 = Sha256Hex(k.compiled.log);
    s.registers = k.compiled.usage.registers;
    s.spill_store_bytes = k.compiled.usage.spill_store_bytes;
    s.spill_load_bytes = k.compiled.usage.spill_load_bytes;
    KVCC_RETURN_IF_ERROR(
        ir::WriteFileAtomically(absl::StrCat(kernels_dir, "/", s.cubin_file), k.compiled.cubin));
    KVCC_RETURN_IF_ERROR(
        ir::WriteFileAtomically(absl::StrCat(kernels_dir, "/", s.log_file), k.compiled.log));
    m.kernels.push_back(std::move(s));
  }
  return ir::WriteFileAtomically(absl::StrCat(kernels_dir, "/", kKernelManifestName),
                                 KernelManifestToJson(m));
}

}  // namespace kvcc::codegen
