// Element types of kvcc tensors: names, bit widths and storage sizes.
#pragma once

#include <cstdint>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace kvcc::ir {

enum class DType : uint8_t { kF32, kF16, kBF16, kI8, kU8, kI4, kFP8E4M3, kI32 };

// Short lowercase name used by the printer, the CLI and error messages ("f16", "i4", ...).
absl::string_view DTypeName(DType dtype);
absl::StatusOr<DType> ParseDType(absl::string_view name);
int DTypeBits(DType dtype);
// Bytes needed to store `count` elements; sub-byte types pack densely and round up.
int64_t DTypeBytes(DType dtype, int64_t count);
bool IsFloat(DType dtype);

}  // namespace kvcc::ir
