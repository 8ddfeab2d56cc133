#include "runtime/kv_pool_budget.h"

#include <cmath>

#include <cuda_runtime_api.h>

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"
#include "runtime/cuda/cuda_context.h"
#include "runtime/kv_cache.h"

namespace kvcc::runtime {
namespace {

int64_t MiB(int64_t bytes) { return bytes >> 20; }

}  // namespace

int64_t DeviceWeightBytes(const ir::Module& module) {
  int64_t total = 0;
  for (const ir::Value* w : module.graph.weights()) {
    const int64_t bytes = w->type.NumBytes();
    total += bytes;
    if (w->type.dtype == ir::DType::kF32) total += bytes / 2;
  }
  return total;
}

absl::StatusOr<KvPoolBudget> KvPoolFromFreeMemory(const ir::Module& module, double fraction,
                                                  int block_size, int64_t free_bytes,
                                                  bool weights_uploaded) {
  if (!(fraction > 0.0 && fraction <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--cache-max-entry-count must be a fraction of free memory in (0, 1], got ", fraction));
  }
  if (block_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache block size ", block_size,
                                                   " must be positive"));
  }
  // kKiviBlocksPerStaging blocks: a block_channel K's staging share divides evenly.
  KVCC_ASSIGN_OR_RETURN(auto spec,
                        KvCacheSpecFromModule(module, block_size, kKiviBlocksPerStaging));
  KvPoolBudget b;
  b.free_bytes = free_bytes;
  b.weight_bytes = DeviceWeightBytes(module);
  b.bytes_per_token = spec.layout.TotalBytes() / (block_size * kKiviBlocksPerStaging);
  const int64_t after = free_bytes - (weights_uploaded ? 0 : b.weight_bytes);
  if (after <= 0) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the model's weights (", MiB(b.weight_bytes), " MiB on the device) do not fit in the ",
        MiB(free_bytes), " MiB of free GPU memory"));
  }
  const double share = std::floor(static_cast<double>(after) * fraction);
  const int64_t blocks =
      static_cast<int64_t>(share / static_cast<double>(b.bytes_per_token * block_size));
  if (blocks < 1) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "--cache-max-entry-count ", fraction, " of the ", MiB(after),
        " MiB free after the weights holds no KV-cache block of ", block_size, " tokens (",
        b.bytes_per_token * block_size, " bytes); raise the fraction or free GPU memory"));
  }
  b.tokens = blocks * block_size;
  return b;
}

absl::StatusOr<KvPoolBudget> KvPoolFromDeviceMemory(const ir::Module& module, double fraction,
                                                    int block_size, int device) {
  if (!CudaDeviceAvailable()) {
    return absl::FailedPreconditionError(
        "--cache-max-entry-count sizes the KV cache from GPU memory, and no GPU is present");
  }
  KVCC_RETURN_IF_ERROR(CudaCheck(cudaSetDevice(device), "cudaSetDevice"));
  size_t free_b = 0, total_b = 0;
  KVCC_RETURN_IF_ERROR(CudaCheck(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo"));
  return KvPoolFromFreeMemory(module, fraction, block_size, static_cast<int64_t>(free_b), false);
}

}  // namespace kvcc::runtime
