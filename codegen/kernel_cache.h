// The on-disk kernel cache: compiled cubins (with their compile log) stored under a directory,
// keyed by sha256 of everything that determines the binary. Writers publish entries with
// temp file + rename, so concurrent processes never read a half-written entry; every entry
// carries its payload length and sha256, so a truncated or corrupted one is detected, deleted
// and rebuilt rather than loaded.
#pragma once

#include <atomic>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "codegen/kernel_store.h"

namespace kvcc::codegen {

class KernelCache : public KernelStore {
 public:
  // $KVCC_CACHE_DIR, else $XDG_CACHE_HOME/kvcc, else $HOME/.cache/kvcc.
  static std::string DefaultDir();
  // The cache key: sha256 over the source, the options, the target arch and the NVRTC version.
  static std::string Key(absl::string_view source, absl::string_view options,
                         absl::string_view arch, absl::string_view nvrtc_version);

  explicit KernelCache(std::string dir) : dir_(std::move(dir)) {}

  const std::string& dir() const { return dir_; }
  std::string EntryPath(absl::string_view key) const;

  // The payload stored under `key`, nullopt when absent or corrupt (a corrupt entry is removed).
  // Errors only for I/O failures other than "not found".
  absl::StatusOr<std::optional<std::string>> Lookup(absl::string_view key) override;
  // Publishes `payload` under `key` atomically (creates the directory when needed).
  absl::Status Store(absl::string_view key, absl::string_view payload) override;

  int hits() const { return hits_; }
  int misses() const { return misses_; }
  int corrupt() const { return corrupt_; }

 private:
  std::string dir_;
  std::atomic<int> hits_{0}, misses_{0}, corrupt_{0};
};

}  // namespace kvcc::codegen
