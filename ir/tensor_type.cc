#include "ir/tensor_type.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kvcc::ir {

bool TensorType::IsStatic() const {
  for (int64_t d : shape) {
    if (d < 0) return false;
  }
  return true;
}

int64_t TensorType::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    n *= d;
  }
  return n;
}

int64_t TensorType::NumBytes() const {
  int64_t n = NumElements();
  return n < 0 ? -1 : DTypeBytes(dtype, n);
}

std::string TensorType::ToString() const {
  return absl::StrCat(DTypeName(dtype), "[",
                      absl::StrJoin(shape, ",",
                                    [](std::string* out, int64_t d) {
                                      absl::StrAppend(out, d < 0 ? std::string("?")
                                                                 : absl::StrCat(d));
                                    }),
                      "]");
}

}  // namespace kvcc::ir
