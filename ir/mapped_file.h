// A read-only memory map of a whole file, shared by every weight that points into it. Only a
// regular file is mapped (opened through ir::OpenRegularFile, so a FIFO never blocks).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvcc::ir {

class MappedFile {
 public:
  // `what` names the file's role in messages ("checkpoint shard", "weights file").
  static absl::StatusOr<std::shared_ptr<MappedFile>> Open(const std::string& path,
                                                          absl::string_view what = "file");
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Runs `fn` on the caller's thread while up to `threads` others map the file's pages in
  // (MADV_POPULATE_READ, 64 MiB at a time in file order), so a pass over all the bytes (the
  // weights digest) finds them mapped instead of faulting them in one by one; returns when
  // both are done. Where the kernel lacks the advice only the speed-up is lost.
  void WithPagesPopulating(int threads, const std::function<void()>& fn) const;

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

}  // namespace kvcc::ir
