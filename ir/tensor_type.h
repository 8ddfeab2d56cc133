// The type of an IR value: element dtype and shape, where kDynamic marks the token dimension.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/dtype.h"

namespace kvcc::ir {

inline constexpr int64_t kDynamic = -1;

struct TensorType {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;

  bool IsStatic() const;
  // Element count; -1 when any dimension is dynamic.
  int64_t NumElements() const;
  // Storage bytes of a static tensor (sub-byte dtypes packed); -1 when dynamic.
  int64_t NumBytes() const;
  // "f16[?,4096]"
  std::string ToString() const;
  bool operator==(const TensorType& other) const {
    return dtype == other.dtype && shape == other.shape;
  }
  bool operator!=(const TensorType& other) const { return !(*this == other); }
};

}  // namespace kvcc::ir
