// Writes a file so that readers see either the old file or the complete new one, never a
// partial write: bytes go to a temporary file beside the target, which is renamed into place
// only after everything was written and flushed. A symlinked target is written through (the
// file it names is replaced, the link stays); a target that exists but is not a regular file
// (a device such as /dev/full, a FIFO, a directory) is refused, never renamed over.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvcc::ir {

class AtomicFile {
 public:
  static absl::StatusOr<std::unique_ptr<AtomicFile>> Create(const std::string& path);
  // Removes the temporary file unless Commit succeeded.
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Errors (a full disk, EFBIG past `ulimit -f`) name the path; the temporary is removed when
  // the AtomicFile is destroyed.
  absl::Status Write(const void* data, size_t size);
  absl::Status Write(absl::string_view bytes) { return Write(bytes.data(), bytes.size()); }
  // Flushes to disk and renames over the target.
  absl::Status Commit();

  const std::string& path() const { return path_; }
  uint64_t bytes_written() const { return written_; }

 private:
  AtomicFile(std::string path, std::string target, std::string temp, int fd)
      : path_(std::move(path)), target_(std::move(target)), temp_(std::move(temp)), fd_(fd) {}
  std::string path_;    // as given, for messages
  std::string target_;  // path_ with symlinks followed: what the rename replaces
  std::string temp_;
  int fd_;
  uint64_t written_ = 0;
  bool committed_ = false;
};

// The whole of `contents` as `path`, atomically.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

}  // namespace kvcc::ir
