// Reading an input file safely: opened without blocking (a FIFO or device never hangs the
// reader), refused unless it is a regular file, and capped in size, with errors that say
// which of those the path is. Every reader of a user-supplied file goes through here.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvcc::ir {

// "a directory", "a FIFO", "a character device", ... for messages; "" for a regular file.
std::string NonRegularKind(uint32_t st_mode);

// An open regular file and its size as fstat read it when it was checked; the caller closes fd.
struct RegularFile {
  int fd = -1;
  int64_t size = 0;
};

// A file descriptor opened O_RDONLY | O_NONBLOCK | O_CLOEXEC, then checked to be a regular file
// (clearing O_NONBLOCK again); NotFound when the path does not exist, InvalidArgument when it is
// not a regular file. `what` names the file's role in messages ("config", "kv_params").
absl::StatusOr<RegularFile> OpenRegularFile(const std::string& path, absl::string_view what);

// The whole file, at most `max_bytes`.
absl::StatusOr<std::string> ReadRegularFile(const std::string& path, int64_t max_bytes,
                                            absl::string_view what = "file");

}  // namespace kvcc::ir
