// The kernel store of a compiled artifact's kernels/ directory: answers the builder's lookups
// with the cubins `kvcc compile` put there (each checked against its sha256 in
// kernels/manifest.json; a damaged file is an error naming it, never loaded), passes keys it
// lacks to a fallback store (the on-disk cache, then NVRTC) or, without JIT, refuses them, and
// counts where every kernel came from.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "codegen/kernel_store.h"
#include "codegen/kernel_store_manifest.h"
#include "codegen/nvrtc_compiler.h"

namespace kvcc::codegen {

class ArtifactKernelStore : public KernelStore {
 public:
  // Reads `kernels_dir`/manifest.json. `present_arch` ("sm_90a"; "" when unknown) is the GPU's
  // target: when the artifact has no cubins for it this warns on stderr that the kernels will be
  // compiled, or, with !allow_jit, fails saying so. Cubins made by another NVRTC are used as
  // they are (a cubin is machine code for its arch; the driver, not NVRTC, loads it).
  static absl::StatusOr<std::shared_ptr<ArtifactKernelStore>> Open(
      const std::string& kernels_dir, std::shared_ptr<KernelStore> fallback, bool allow_jit,
      const std::string& present_arch);
  // Prints Summary() on stderr when any kernel was asked for.
  ~ArtifactKernelStore() override;

  absl::StatusOr<std::optional<std::string>> Lookup(absl::string_view key) override;
  absl::Status Store(absl::string_view key, absl::string_view payload) override;
  // The manifest's NVRTC version: the keys of the stored kernels carry it.
  std::string KeyNvrtcVersion() override { return manifest_.nvrtc_version; }

  const KernelManifest& manifest() const { return manifest_; }
  int from_artifact() const { return from_artifact_; }
  int from_fallback() const { return from_fallback_; }
  // NVRTC compiles in this process since the store was opened.
  int64_t compiled() const { return NvrtcCompileCount() - nvrtc_at_open_; }
  // "kernels: 12 from artifact, 0 from cache, 0 compiled (NVRTC)".
  std::string Summary() const;

 private:
  ArtifactKernelStore() = default;
  std::string dir_;
  KernelManifest manifest_;
  std::map<std::string, const StoredKernel*> by_key_;
  std::shared_ptr<KernelStore> fallback_;
  bool allow_jit_ = true;
  std::string present_arch_;
  int64_t nvrtc_at_open_ = 0;
  std::atomic<int> from_artifact_{0}, from_fallback_{0};
};

// One kernel for WriteKernelDir.
struct KernelToStore {
  std::string key, spec, arch, entry;
  std::string program;  // names the files: <program>_<arch>_<key prefix>.cubin
  CompiledKernel compiled;
};

// Writes each kernel's cubin and log into `kernels_dir` (created) and the manifest listing them.
absl::Status WriteKernelDir(const std::string& kernels_dir,
                            const std::vector<KernelToStore>& kernels);

// `kernels_dir`/`file` when its sha256 is `sha256_hex`; else DataLoss naming the file.
absl::StatusOr<std::string> ReadStoredFile(const std::string& kernels_dir,
                                           const std::string& file,
                                           const std::string& sha256_hex);

}  // namespace kvcc::codegen
