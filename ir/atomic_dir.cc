#include "ir/atomic_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "ir/file_read.h"
#include "ir/status_macros.h"

namespace kvcc::ir {
namespace {
namespace fs = std::filesystem;

// OK when `target` may be replaced (see Create); `exists` tells whether it is there now.
absl::Status CheckReplaceable(const std::string& target, const std::string& marker,
                              bool* exists) {
  std::error_code ec;
  const fs::file_status st = fs::symlink_status(target, ec);
  *exists = fs::exists(st);
  if (!*exists) return absl::OkStatus();
  if (!fs::is_directory(st)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot write ", target, ": it exists and is not a directory"));
  }
  if (fs::is_empty(target, ec) && !ec) return absl::OkStatus();
  if (fs::exists(fs::path(target) / marker, ec)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("cannot write ", target, ": the directory holds files but no ", marker,
                   ", so it is not an earlier output; refusing to replace it (remove it or pick "
                   "another path)"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<AtomicDirectory>> AtomicDirectory::Create(
    const std::string& target_in, const std::string& marker) {
  fs::path target = fs::path(target_in).lexically_normal();
  if (!target.has_filename()) target = target.parent_path();  // "out/" names "out"
  std::error_code ec;
  // A symlinked target is written through, as for files: the directory it names is replaced.
  if (fs::is_symlink(target, ec)) {
    target = fs::canonical(target, ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot write ", target_in, ": the symlink leads nowhere: ", ec.message()));
    }
  }
  bool exists = false;
  KVCC_RETURN_IF_ERROR(CheckReplaceable(target.string(), marker, &exists));
  const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  fs::create_directories(parent, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create directory ", parent.string(), ": ", ec.message()));
  }
  static std::atomic<uint64_t> counter{0};
  const std::string temp = (parent / absl::StrCat(".", target.filename().string(), ".tmp.",
                                                  ::getpid(), ".", counter++))
                               .string();
  if (!fs::create_directory(temp, ec) || ec) {
    return absl::PermissionDeniedError(absl::StrCat("cannot create ", temp, " (for ",
                                                    target.string(), "): ",
                                                    ec ? ec.message() : "it exists"));
  }
  return std::unique_ptr<AtomicDirectory>(new AtomicDirectory(target.string(), marker, temp));
}

AtomicDirectory::~AtomicDirectory() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(temp_, ec);
}

absl::Status AtomicDirectory::Commit() {
  if (committed_) return absl::FailedPreconditionError(absl::StrCat(target_, ": already committed"));
  auto failed = [&](const char* what) {
    return absl::DataLossError(absl::StrCat(what, " ", temp_, " to ", target_, ": ",
                                            std::strerror(errno)));
  };
  // A concurrent writer may create or remove the target between the steps; each step is
  // atomic, so retrying keeps the target one complete directory at every moment.
  for (int attempt = 0; attempt < 16; ++attempt) {
    if (std::rename(temp_.c_str(), target_.c_str()) == 0) {  // absent or empty target
      committed_ = true;
      return absl::OkStatus();
    }
    if (errno != EEXIST && errno != ENOTEMPTY) return failed("renaming");
    bool exists = false;
    KVCC_RETURN_IF_ERROR(CheckReplaceable(target_, marker_, &exists));
    if (::renameat2(AT_FDCWD, temp_.c_str(), AT_FDCWD, target_.c_str(), RENAME_EXCHANGE) == 0) {
      // temp_ now holds the old directory.
      committed_ = true;
      std::error_code ec;
      fs::remove_all(temp_, ec);
      return absl::OkStatus();
    }
    if (errno == ENOENT) continue;  // the target went away: a plain rename again
    if (errno != EINVAL && errno != ENOSYS) return failed("exchanging");
    // No RENAME_EXCHANGE on this file system: move the old one aside first (readers may see no
    // directory for a moment, never a mixed one).
    const std::string old = temp_ + ".old";
    if (std::rename(target_.c_str(), old.c_str()) != 0) {
      if (errno == ENOENT) continue;
      return failed("moving aside the old directory for");
    }
    std::error_code ec;
    if (std::rename(temp_.c_str(), target_.c_str()) == 0) {
      committed_ = true;
      fs::remove_all(old, ec);
      return absl::OkStatus();
    }
    std::rename(old.c_str(), target_.c_str());  // put the old one back if nothing took its place
  }
  return absl::DataLossError(
      absl::StrCat("renaming ", temp_, " to ", target_, ": the target kept changing (another "
                   "process writing it?)"));
}

}  // namespace kvcc::ir
