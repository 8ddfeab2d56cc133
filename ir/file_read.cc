#include "ir/file_read.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"

namespace kvcc::ir {

std::string NonRegularKind(uint32_t st_mode) {
  if (S_ISREG(st_mode)) return "";
  if (S_ISDIR(st_mode)) return "a directory";
  if (S_ISFIFO(st_mode)) return "a FIFO";
  if (S_ISCHR(st_mode)) return "a character device";
  if (S_ISBLK(st_mode)) return "a block device";
  if (S_ISSOCK(st_mode)) return "a socket";
  return "not a regular file";
}

absl::StatusOr<RegularFile> OpenRegularFile(const std::string& path, absl::string_view what) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    const std::string msg = absl::StrCat(what, " ", path, ": ", std::strerror(err));
    if (err == ENOENT || err == ENOTDIR) return absl::NotFoundError(msg);
    return absl::PermissionDeniedError(msg);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(err)));
  }
  if (const std::string kind = NonRegularKind(st.st_mode); !kind.empty()) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", path, " is ", kind, ", expected a regular file"));
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return RegularFile{fd, static_cast<int64_t>(st.st_size)};
}

absl::StatusOr<std::string> ReadRegularFile(const std::string& path, int64_t max_bytes,
                                            absl::string_view what) {
  KVCC_ASSIGN_OR_RETURN(RegularFile file, OpenRegularFile(path, what));
  const int fd = file.fd;
  if (file.size > max_bytes) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(what, " ", path, " is ", file.size,
                                                   " bytes, more than the limit of ", max_bytes));
  }
  std::string out(static_cast<size_t>(file.size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      return absl::DataLossError(absl::StrCat(what, " ", path, ": read ", done, " of ",
                                              out.size(), " bytes",
                                              n < 0 ? absl::StrCat(": ", std::strerror(err)) : ""));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return out;
}

}  // namespace kvcc::ir
