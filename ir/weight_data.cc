#include "ir/weight_data.h"

namespace kvcc::ir {

WeightData WeightData::FromVector(std::vector<uint8_t> buffer) {
  auto holder = std::make_shared<std::vector<uint8_t>>(std::move(buffer));
  WeightData data;
  data.bytes = holder->data();
  data.size = holder->size();
  data.owner = std::move(holder);
  return data;
}

WeightData WeightData::Aligned(size_t alignment) const {
  if (bytes == nullptr || alignment <= 1 || reinterpret_cast<uintptr_t>(bytes) % alignment == 0) {
    return *this;
  }
  // operator new aligns to __STDCPP_DEFAULT_NEW_ALIGNMENT__ (16), enough for any element.
  return FromVector(std::vector<uint8_t>(bytes, bytes + size));
}

}  // namespace kvcc::ir
