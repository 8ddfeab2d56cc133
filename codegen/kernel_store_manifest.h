// kernels/manifest.json of a compiled artifact: one entry per cubin (the kernel cache key it
// answers, the specialization, the arch, the entry point, the file names and sha256 of the
// cubin and of its ptxas log, registers and spills) and the NVRTC version that made them.
// Plain C++ over ir/, so the fuzzer builds it without CUDA.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvcc::codegen {

inline constexpr char kKernelDirName[] = "kernels";
inline constexpr char kKernelManifestName[] = "manifest.json";

struct StoredKernel {
  std::string key;    // KernelCache::Key of the build (64 hex digits)
  std::string spec;   // KernelSpec / OpsKernelSpec ToString
  std::string arch;   // "sm_90a"
  std::string entry;  // the entry point whose resources are reported
  std::string cubin_file, log_file;  // plain file names inside kernels/
  std::string cubin_sha256, log_sha256;
  int registers = -1;
  int spill_store_bytes = 0;
  int spill_load_bytes = 0;
};

struct KernelManifest {
  std::string nvrtc_version;
  std::vector<StoredKernel> kernels;
};

std::string KernelManifestToJson(const KernelManifest& manifest);
// Parses and checks the format, keys, digests (64 lowercase hex), that file names are plain
// names and that no key repeats; `source` names the file in errors.
absl::StatusOr<KernelManifest> ParseKernelManifest(absl::string_view text,
                                                   const std::string& source);

}  // namespace kvcc::codegen
