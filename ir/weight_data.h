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
};

}  // namespace kvcc::ir
