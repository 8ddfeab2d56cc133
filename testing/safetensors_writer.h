// Writes safetensors files (the format frontend/safetensors.h reads) atomically. The header is
// laid out from the declared tensors up front, so tensor bytes can then be streamed without
// holding a whole checkpoint in memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ir/atomic_file.h"
#include "frontend/safetensors.h"
#include "ir/dtype.h"

namespace kvcc::testing {

struct SafetensorsTensorSpec {
  std::string name;
  ir::DType dtype;
  std::vector<int64_t> shape;
};

// Bytes one tensor of this dtype and shape occupies, or an error naming the tensor.
absl::StatusOr<uint64_t> SafetensorsTensorBytes(const SafetensorsTensorSpec& spec);

class SafetensorsWriter {
 public:
  // Tensors are stored contiguously in the given order. `metadata` becomes "__metadata__"
  // (transformers wants {"format": "pt"} there).
  static absl::StatusOr<std::unique_ptr<SafetensorsWriter>> Create(
      const std::string& path, const std::vector<SafetensorsTensorSpec>& tensors,
      const std::map<std::string, std::string>& metadata = {});

  // Appends data-section bytes; calls may split a tensor or span several.
  absl::Status Append(const void* data, size_t size);
  // Checks that exactly the declared bytes arrived, then renames the file into place. Without
  // a successful Finish the target is left untouched.
  absl::Status Finish();

  uint64_t data_bytes() const { return data_bytes_; }

 private:
  SafetensorsWriter(std::unique_ptr<ir::AtomicFile> file, uint64_t data_bytes)
      : file_(std::move(file)), data_bytes_(data_bytes) {}
  std::unique_ptr<ir::AtomicFile> file_;
  uint64_t data_bytes_;
  uint64_t appended_ = 0;
};

// One-shot form: every tensor's bytes (data.size must match dtype x shape).
absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<frontend::SafetensorsTensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace kvcc::testing
