// Writes a whole output directory (an artifact: model.onnx, weights, manifest, tokenizer and
// config side files) so that readers see either the old directory or the complete new one:
// files go into a temporary sibling directory that replaces the target with one rename
// (an atomic exchange when the target exists). Nothing of the old directory survives, so no
// stale side file can win, and of two concurrent writers each leaves one complete directory.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvcc::ir {

class AtomicDirectory {
 public:
  // `target` may be absent, an empty directory, or a directory holding `marker` (one that an
  // earlier write made); anything else (a file, a directory of other things) is refused so a
  // mistyped path never deletes unrelated files. Creates the temporary sibling (and the
  // target's parent directories).
  static absl::StatusOr<std::unique_ptr<AtomicDirectory>> Create(const std::string& target,
                                                                 const std::string& marker);
  // Removes the temporary directory unless Commit succeeded.
  ~AtomicDirectory();
  AtomicDirectory(const AtomicDirectory&) = delete;
  AtomicDirectory& operator=(const AtomicDirectory&) = delete;

  // Where to write the files.
  const std::string& path() const { return temp_; }
  // Puts path() in place of the target; the old directory is removed.
  absl::Status Commit();

 private:
  AtomicDirectory(std::string target, std::string marker, std::string temp)
      : target_(std::move(target)), marker_(std::move(marker)), temp_(std::move(temp)) {}
  std::string target_, marker_, temp_;
  bool committed_ = false;
};

}  // namespace kvcc::ir
