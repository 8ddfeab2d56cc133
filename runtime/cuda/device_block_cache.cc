#include "runtime/cuda/device_block_cache.h"

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"
#include "runtime/cuda/cuda_memory.h"

namespace kvcc::runtime {

std::shared_ptr<DeviceBlockCache> DeviceBlockCache::Create(std::shared_ptr<CudaContext> ctx,
                                                           int64_t max_idle_bytes,
                                                           bool pinned) {
  return std::shared_ptr<DeviceBlockCache>(
      new DeviceBlockCache(std::move(ctx), max_idle_bytes, pinned));
}

DeviceBlockCache::~DeviceBlockCache() { Trim(); }

void DeviceBlockCache::Trim() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [bytes, blocks] : idle_) {
    for (void* p : blocks) cudaFreeAsync(p, ctx_->stream());
  }
  idle_.clear();
  stats_.idle_bytes = 0;
}

DeviceBlockCache::Stats DeviceBlockCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void DeviceBlockCache::Release(void* ptr, int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!pinned_ && stats_.idle_bytes + bytes > max_idle_bytes_) {
    cudaFreeAsync(ptr, ctx_->stream());
    return;
  }
  idle_[bytes].push_back(ptr);
  stats_.idle_bytes += bytes;
}

absl::StatusOr<Tensor> DeviceBlockCache::Allocate(ir::DType dtype, std::vector<int64_t> shape,
                                                  bool zero) {
  KVCC_ASSIGN_OR_RETURN(const int64_t bytes, DeviceTensorBytes(dtype, shape));
  if (bytes == 0) return Tensor::View(dtype, std::move(shape), Device::kCuda, nullptr, nullptr);
  void* ptr = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = idle_.find(bytes);
    if (it != idle_.end() && !it->second.empty()) {
      ptr = it->second.back();
      it->second.pop_back();
      stats_.idle_bytes -= bytes;
      ++stats_.hits;
    } else {
      ++stats_.misses;
    }
  }
  if (ptr == nullptr) {
    cudaError_t err = cudaMallocAsync(&ptr, bytes, ctx_->stream());
    if (err == cudaErrorMemoryAllocation && !pinned_) {
      // Idle blocks of other sizes may be what the pool lacks.
      cudaGetLastError();
      Trim();
      err = cudaMallocAsync(&ptr, bytes, ctx_->stream());
    }
    KVCC_RETURN_IF_ERROR(CudaCheck(err, absl::StrCat("cudaMallocAsync(", bytes, " bytes for ",
                                                     ir::DTypeName(dtype), " tensor)")));
  }
  if (zero) {
    if (auto s = CudaCheck(cudaMemsetAsync(ptr, 0, bytes, ctx_->stream()), "cudaMemsetAsync");
        !s.ok()) {
      Release(ptr, bytes);
      return s;
    }
  }
  std::shared_ptr<DeviceBlockCache> self = shared_from_this();
  std::shared_ptr<const void> owner(ptr, [self, bytes](const void* p) {
    self->Release(const_cast<void*>(p), bytes);
  });
  return Tensor::View(dtype, std::move(shape), Device::kCuda, ptr, std::move(owner));
}

}  // namespace kvcc::runtime
