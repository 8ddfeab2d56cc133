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

}  // namespace kvcc::ir
