#include "ir/mapped_file.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <thread>
#include <vector>
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

void MappedFile::WithPagesPopulating(int threads, const std::function<void()>& fn) const {
#ifndef MADV_POPULATE_READ
  constexpr int MADV_POPULATE_READ = 22;  // Linux 5.14
#endif
  static constexpr size_t kStep = size_t{64} << 20;
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  const size_t steps = (size_ + kStep - 1) / kStep;
  for (int t = 0; t < threads && static_cast<size_t>(t) < steps; ++t) {
    pool.emplace_back([this, &next, steps] {
      for (size_t i; (i = next.fetch_add(1)) < steps;) {
        const size_t len = std::min(kStep, size_ - i * kStep);
        // Offsets are multiples of 64 MiB from the page-aligned start of the mapping.
        if (::madvise(const_cast<uint8_t*>(data_) + i * kStep, len, MADV_POPULATE_READ) != 0) {
          return;
        }
      }
    });
  }
  fn();
  for (std::thread& th : pool) th.join();
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace kvcc::ir
