// Where the kernel builder finds compiled kernels before it calls NVRTC: a store of payloads
// (compile log + cubin) keyed by the kernel cache key. The on-disk cache (kernel_cache.h) and a
// compiled artifact's kernels/ directory (kernel_store_artifact.h) both are one, so the CUDA
// backend loads an artifact's cubins through the same BuildKernel call as the cache's.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "codegen/nvrtc_compiler.h"

namespace kvcc::codegen {

class KernelStore {
 public:
  virtual ~KernelStore() = default;
  // The payload stored under `key`; nullopt when absent (then the builder compiles). An error
  // stops the build (a damaged artifact file, or a miss where compiling is forbidden).
  virtual absl::StatusOr<std::optional<std::string>> Lookup(absl::string_view key) = 0;
  // Keeps a freshly compiled payload; a read-only store ignores it.
  virtual absl::Status Store(absl::string_view key, absl::string_view payload) = 0;
  // The NVRTC version the stored kernels were compiled with ("13.0"), which their keys carry;
  // empty: this process's NVRTC. An artifact answers from its manifest, so opening one never
  // loads NVRTC (about 100 MB) just to compute keys.
  virtual std::string KeyNvrtcVersion() { return ""; }
};

// A payload: "<log length>\n" log cubin. The resource report is re-read from the log, so a
// stored kernel reports the same ptxas usage as a fresh one.
std::string EncodeKernelPayload(const CompiledKernel& kernel);
// False when `payload` is not one (or holds no cubin).
bool DecodeKernelPayload(absl::string_view payload, absl::string_view kernel_name,
                         CompiledKernel* kernel);

// `kvcc compile`'s store: passes every lookup and store through to `inner` (may be null) and
// keeps every payload the builder found or made, so the artifact gets exactly the kernels the
// build of the plan asked for (a spilling kernel's uncapped rebuild included).
class RecordingKernelStore : public KernelStore {
 public:
  explicit RecordingKernelStore(KernelStore* inner) : inner_(inner) {}
  absl::StatusOr<std::optional<std::string>> Lookup(absl::string_view key) override;
  absl::Status Store(absl::string_view key, absl::string_view payload) override;
  std::string KeyNvrtcVersion() override {
    return inner_ == nullptr ? "" : inner_->KeyNvrtcVersion();
  }
  // Payloads recorded since the last call, by key.
  std::map<std::string, std::string> TakeRecorded();

 private:
  KernelStore* inner_;
  std::map<std::string, std::string> recorded_;
};

}  // namespace kvcc::codegen
