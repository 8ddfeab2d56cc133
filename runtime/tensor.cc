#include "runtime/tensor.h"

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kvcc::runtime {

const char* DeviceName(Device device) { return device == Device::kCpu ? "cpu" : "cuda"; }

Tensor Tensor::HostUninitialized(ir::DType dtype, std::vector<int64_t> shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.device_ = Device::kCpu;
  // 64-byte alignment keeps rows SIMD-friendly; sizing from bytes + 64 gives even an empty
  // tensor a real (non-null) allocation.
  const size_t bytes = static_cast<size_t>(t.NumBytes());
  const size_t padded = (bytes + 64) / 64 * 64;
  void* p = std::aligned_alloc(64, padded);
  if (p == nullptr) return Tensor();
  t.owner_ = std::shared_ptr<const void>(p, [](const void* q) { std::free(const_cast<void*>(q)); });
  t.data_ = p;
  return t;
}

Tensor Tensor::HostZeros(ir::DType dtype, std::vector<int64_t> shape) {
  Tensor t = HostUninitialized(dtype, std::move(shape));
  if (t.raw() != nullptr) std::memset(t.raw(), 0, static_cast<size_t>(t.NumBytes()));
  return t;
}

Tensor Tensor::View(ir::DType dtype, std::vector<int64_t> shape, Device device, void* data,
                    std::shared_ptr<const void> owner) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.device_ = device;
  t.data_ = data;
  t.owner_ = std::move(owner);
  return t;
}

int64_t Tensor::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

std::string Tensor::ToString() const {
  return absl::StrCat(ir::DTypeName(dtype_), "[", absl::StrJoin(shape_, ","), "]@",
                      DeviceName(device_));
}

}  // namespace kvcc::runtime
