#include "ir/mapped_file.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "ir/file_read.h"
#include "ir/status_macros.h"

namespace kvcc::ir {

absl::StatusOr<std::shared_ptr<MappedFile>> MappedFile::Open(const std::string& path,
                                                             absl::string_view what) {
  // Opened without blocking and checked to be a regular file first: a FIFO or device in place
  // of a checkpoint shard or model.weights is an error, never a hang.
  KVCC_ASSIGN_OR_RETURN(RegularFile file, OpenRegularFile(path, what));
  const int fd = file.fd;
  const size_t size = static_cast<size_t>(file.size);
  const uint8_t* data = nullptr;
  if (size > 0) {
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      return absl::InternalError(absl::StrCat("cannot mmap ", what, " ", path, ": ",
                                              std::strerror(err)));
    }
    data = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return std::shared_ptr<MappedFile>(new MappedFile(path, data, size));
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace kvcc::ir
