// Bytes of a weight tensor: a view into memory kept alive by `owner` (an mmap'd checkpoint or
// artifact file, or a heap buffer a pass produced).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace kvcc::ir {

struct WeightData {
  std::shared_ptr<const void> owner;
  const uint8_t* bytes = nullptr;
  size_t size = 0;

  // Takes ownership of a heap buffer.
  static WeightData FromVector(std::vector<uint8_t> buffer);

  // This view when its bytes start at a multiple of `alignment` (<= 16), else a heap copy that
  // does: backends load whole elements, and a tensor at an odd offset of a safetensors file
  // would make those loads misaligned (undefined behaviour).
  WeightData Aligned(size_t alignment) const;
};

}  // namespace kvcc::ir
