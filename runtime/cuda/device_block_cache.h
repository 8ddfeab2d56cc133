// A caching allocator for the CUDA backend's op results: a result's memory goes back to a free
// list keyed by its exact byte size when its last Tensor goes away, and the next allocation of
// that size takes it without any CUDA call. A decode step repeats the previous step's shapes,
// so after the first step of a batch size it allocates nothing. A miss first hands idle blocks
// of other sizes (largest first, as many bytes as it needs) back to the stream-ordered pool,
// which serves the new size from them: what the cache holds stays near the most bytes live at
// once instead of growing by every distinct size a prefill chunk makes (KVCC_BLOCK_REUSE=0
// keeps every idle block up to the cap instead, for A/B).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/dtype.h"
#include "runtime/cuda/cuda_context.h"
#include "runtime/tensor.h"

namespace kvcc::runtime {

class DeviceBlockCache : public std::enable_shared_from_this<DeviceBlockCache> {
 public:
  // Keeps at most `max_idle_bytes` of freed blocks; a block freed beyond that goes back to the
  // stream-ordered pool. With `pinned`, no block goes back before the cache is destroyed (not
  // even when an allocation runs out of memory): captured graphs keep their addresses.
  static std::shared_ptr<DeviceBlockCache> Create(std::shared_ptr<CudaContext> ctx,
                                                  int64_t max_idle_bytes, bool pinned = false);
  ~DeviceBlockCache();
  DeviceBlockCache(const DeviceBlockCache&) = delete;
  DeviceBlockCache& operator=(const DeviceBlockCache&) = delete;

  // A device tensor of `dtype` and `shape`, zero-filled when `zero` is set. Every block is used
  // on the context's one stream only, so a block freed on the host while queued kernels still
  // read it is safe to hand out again: whatever uses it next is queued after them.
  absl::StatusOr<Tensor> Allocate(ir::DType dtype, std::vector<int64_t> shape, bool zero);
  // Returns every idle block to the pool.
  void Trim();

  struct Stats {
    int64_t hits = 0;        // allocations served from the free lists
    int64_t misses = 0;      // allocations that called cudaMallocAsync
    int64_t idle_bytes = 0;  // bytes held in the free lists now
    int64_t live_bytes = 0;  // bytes of blocks handed out and not yet freed
    int64_t peak_live_bytes = 0;
    int64_t peak_held_bytes = 0;  // the most live + idle bytes at once
    int64_t returned = 0;  // idle blocks handed back to the pool by misses
  };
  Stats stats() const;

 private:
  DeviceBlockCache(std::shared_ptr<CudaContext> ctx, int64_t max_idle_bytes, bool pinned)
      : ctx_(std::move(ctx)), max_idle_bytes_(max_idle_bytes), pinned_(pinned) {}
  void Release(void* ptr, int64_t bytes);
  // Hands idle blocks back to the pool, largest first, until `bytes` are returned (mu_ held).
  void ReturnIdleLocked(int64_t bytes);

  std::shared_ptr<CudaContext> ctx_;
  const int64_t max_idle_bytes_;
  const bool pinned_;
  bool reuse_ = true;  // KVCC_BLOCK_REUSE != 0
  mutable std::mutex mu_;  // tensors may be dropped on other threads
  std::unordered_map<int64_t, std::vector<void*>> idle_;
  Stats stats_;
};

}  // namespace kvcc::runtime
