#include "ir/dtype.h"

#include "absl/strings/str_cat.h"

namespace kvcc::ir {
namespace {
struct DTypeInfo {
  DType dtype;
  absl::string_view name;
  int bits;
};
constexpr DTypeInfo kInfos[] = {
    {DType::kF32, "f32", 32},  {DType::kF16, "f16", 16}, {DType::kBF16, "bf16", 16},
    {DType::kI8, "i8", 8},     {DType::kU8, "u8", 8},    {DType::kI4, "i4", 4},
    {DType::kFP8E4M3, "fp8e4m3", 8}, {DType::kI32, "i32", 32},
};
}  // namespace

absl::string_view DTypeName(DType dtype) { return kInfos[static_cast<int>(dtype)].name; }

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  for (const DTypeInfo& info : kInfos) {
    if (info.name == name) return info.dtype;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown dtype '", name, "'; expected one of f32 f16 bf16 i8 u8 i4 fp8e4m3 i32"));
}

int DTypeBits(DType dtype) { return kInfos[static_cast<int>(dtype)].bits; }

int64_t DTypeBytes(DType dtype, int64_t count) { return (count * DTypeBits(dtype) + 7) / 8; }

bool IsFloat(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16 ||
         dtype == DType::kFP8E4M3;
}

}  // namespace kvcc::ir
