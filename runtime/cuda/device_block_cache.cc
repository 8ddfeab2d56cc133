#include "runtime/cuda/device_block_cache.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"
#include "runtime/cuda/cuda_memory.h"

namespace kvcc::runtime {

std::shared_ptr<DeviceBlockCache> DeviceBlockCache::Create(std::shared_ptr<CudaContext> ctx,
                                                           int64_t max_idle_bytes,
                                                           bool pinned) {
  std::shared_ptr<DeviceBlockCache> cache(
      new DeviceBlockCache(std::move(ctx), max_idle_bytes, pinned));
  const char* reuse = std::getenv("KVCC_BLOCK_REUSE");
  cache->reuse_ = reuse == nullptr || std::string(reuse) != "0";
  return cache;
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

void DeviceBlockCache::ReturnIdleLocked(int64_t bytes) {
  std::vector<int64_t> sizes;
  for (const auto& [size, blocks] : idle_) {
    if (!blocks.empty()) sizes.push_back(size);
  }
  std::sort(sizes.rbegin(), sizes.rend());
  int64_t returned = 0;
  for (int64_t size : sizes) {
    std::vector<void*>& blocks = idle_[size];
    while (!blocks.empty() && returned < bytes) {
      cudaFreeAsync(blocks.back(), ctx_->stream());
      blocks.pop_back();
      returned += size;
      stats_.idle_bytes -= size;
      ++stats_.returned;
    }
    if (returned >= bytes) break;
  }
}

void DeviceBlockCache::Release(void* ptr, int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.live_bytes -= bytes;
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
      // Stream order makes the returned blocks free for this allocation at once.
      if (!pinned_ && reuse_) ReturnIdleLocked(bytes);
    }
    stats_.live_bytes += bytes;
    stats_.peak_live_bytes = std::max(stats_.peak_live_bytes, stats_.live_bytes);
    stats_.peak_held_bytes =
        std::max(stats_.peak_held_bytes, stats_.live_bytes + stats_.idle_bytes);
  }
  if (ptr == nullptr) {
    cudaError_t err = cudaMallocAsync(&ptr, bytes, ctx_->stream());
    if (err == cudaErrorMemoryAllocation && !pinned_) {
      // Idle blocks of other sizes may be what the pool lacks.
      cudaGetLastError();
      Trim();
      err = cudaMallocAsync(&ptr, bytes, ctx_->stream());
    }
    if (err != cudaSuccess) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        stats_.live_bytes -= bytes;
      }
      return CudaCheck(err, absl::StrCat("cudaMallocAsync(", bytes, " bytes for ",
                                         ir::DTypeName(dtype), " tensor)"));
    }
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
