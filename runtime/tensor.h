// A dense row-major tensor as the backends exchange it: dtype, shape, the device its bytes live
// on, and a shared owner keeping those bytes alive. The runtime never dereferences a non-CPU
// tensor on the host; backends allocate (and copy) their own tensors.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ir/dtype.h"

namespace kvcc::runtime {

enum class Device { kCpu, kCuda };
const char* DeviceName(Device device);

class Tensor {
 public:
  Tensor() = default;
  // A fresh zero-filled host tensor.
  static Tensor HostZeros(ir::DType dtype, std::vector<int64_t> shape);
  // The same without zero-filling, for results every element of which is written next.
  static Tensor HostUninitialized(ir::DType dtype, std::vector<int64_t> shape);
  // A view of memory owned by `owner` (e.g. an mmap'd checkpoint); no copy.
  static Tensor View(ir::DType dtype, std::vector<int64_t> shape, Device device, void* data,
                     std::shared_ptr<const void> owner);

  bool defined() const { return data_ != nullptr || NumElements() == 0; }
  ir::DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_[i]; }
  int64_t NumElements() const;
  int64_t NumBytes() const { return ir::DTypeBytes(dtype_, NumElements()); }
  // Rows and columns of a 2-D tensor seen as a matrix (a 1-D tensor is one row).
  int64_t rows() const { return shape_.size() >= 2 ? shape_[0] : 1; }
  int64_t cols() const { return shape_.empty() ? 1 : shape_.back(); }
  std::string ToString() const;  // "f32[3,64]@cpu"

  void* raw() const { return data_; }
  template <typename T>
  T* data() const {
    return static_cast<T*>(data_);
  }
  const std::shared_ptr<const void>& owner() const { return owner_; }

 private:
  ir::DType dtype_ = ir::DType::kF32;
  std::vector<int64_t> shape_;
  Device device_ = Device::kCpu;
  void* data_ = nullptr;
  std::shared_ptr<const void> owner_;
};

}  // namespace kvcc::runtime
