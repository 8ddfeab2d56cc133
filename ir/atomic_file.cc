#include "ir/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ir/file_read.h"
#include "ir/status_macros.h"

namespace kvcc::ir {
namespace {

// As the kernel's limit on symlink hops.
constexpr int kMaxSymlinkHops = 40;

// `path` with symlinks in its last component followed, so the rename replaces the file a link
// names rather than the link. Sets *st / *exists for what the final path is.
absl::StatusOr<std::string> FollowLinks(const std::string& path, struct stat* st, bool* exists) {
  std::string target = path;
  for (int hop = 0; hop <= kMaxSymlinkHops; ++hop) {
    if (::lstat(target.c_str(), st) != 0) {
      if (errno == ENOENT) {
        *exists = false;
        return target;
      }
      return absl::PermissionDeniedError(
          absl::StrCat("cannot write ", path, ": ", target, ": ", std::strerror(errno)));
    }
    if (!S_ISLNK(st->st_mode)) {
      *exists = true;
      return target;
    }
    std::vector<char> buf(static_cast<size_t>(st->st_size > 0 ? st->st_size : 255) + 1);
    const ssize_t n = ::readlink(target.c_str(), buf.data(), buf.size());
    if (n < 0 || static_cast<size_t>(n) >= buf.size()) {
      return absl::PermissionDeniedError(absl::StrCat("cannot write ", path, ": reading link ",
                                                      target, ": ", std::strerror(errno)));
    }
    std::string link(buf.data(), static_cast<size_t>(n));
    const size_t slash = target.rfind('/');
    if (link.empty() || link[0] != '/') {
      link = slash == std::string::npos ? link : target.substr(0, slash + 1) + link;
    }
    target = std::move(link);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("cannot write ", path, ": more than ", kMaxSymlinkHops, " symlink hops"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<AtomicFile>> AtomicFile::Create(const std::string& path) {
  struct stat st;
  bool exists = false;
  KVCC_ASSIGN_OR_RETURN(std::string target, FollowLinks(path, &st, &exists));
  if (exists) {
    if (const std::string kind = NonRegularKind(st.st_mode); !kind.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot write ", path, (target == path ? "" : " (-> " + target + ")"),
                       ": it is ", kind, "; kvcc writes only regular files and will not replace it"));
    }
  }
  // Unique per process and per call, so concurrent writers of one target never share a temp.
  static std::atomic<uint64_t> counter{0};
  std::string temp = absl::StrCat(target, ".tmp.", ::getpid(), ".", counter++);
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", temp, " (for ", path, "): ", std::strerror(errno)));
  }
  // A replaced file keeps its permissions.
  if (exists) ::fchmod(fd, st.st_mode & 07777);
  return std::unique_ptr<AtomicFile>(new AtomicFile(path, std::move(target), std::move(temp), fd));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_.c_str());
}

absl::Status AtomicFile::Write(const void* data, size_t size) {
  if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat(path_, ": already committed"));
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd_, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::DataLossError(absl::StrCat("writing ", path_, " (via ", temp_,
                                              ", removed): ", std::strerror(errno)));
    }
    p += n;
    size -= static_cast<size_t>(n);
    written_ += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::Status AtomicFile::Commit() {
  if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat(path_, ": already committed"));
  int fd = fd_;
  fd_ = -1;
  const bool synced = ::fsync(fd) == 0;
  const int sync_errno = errno;
  if (::close(fd) != 0 || !synced) {
    if (!synced) errno = sync_errno;
    return absl::DataLossError(absl::StrCat("flushing ", path_, " (via ", temp_,
                                            ", removed): ", std::strerror(errno)));
  }
  if (std::rename(temp_.c_str(), target_.c_str()) != 0) {
    return absl::DataLossError(
        absl::StrCat("renaming ", temp_, " to ", target_, ": ", std::strerror(errno)));
  }
  committed_ = true;
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents) {
  KVCC_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFile> file, AtomicFile::Create(path));
  KVCC_RETURN_IF_ERROR(file->Write(contents));
  return file->Commit();
}

}  // namespace kvcc::ir
