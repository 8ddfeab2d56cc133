// Sizing the paged KV-cache pool from device memory, as LMDeploy's --cache-max-entry-count:
// the pool takes a fraction of the memory that is free once the model's weights are on the
// device, in whole blocks. Commands compute this before Engine::Create and pass the result as
// EngineOptions::cache_tokens.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "ir/module.h"

namespace kvcc::runtime {

struct KvPoolBudget {
  int64_t free_bytes = 0;       // device memory free when sized
  int64_t weight_bytes = 0;     // device memory the weights will take
  int64_t bytes_per_token = 0;  // every layer's K and V (and online params) of one token
  int64_t tokens = 0;           // pool size, a whole number of blocks
  int64_t pool_bytes() const { return tokens * bytes_per_token; }
};

// Device bytes the CUDA backend holds for `module`'s weights: f16/bf16 as stored, f32 weights
// plus the f16 copy the GEMMs read (counted for every f32 weight, an upper bound).
int64_t DeviceWeightBytes(const ir::Module& module);

// The pool for `fraction` (in (0, 1]) of `free_bytes` less the weights not yet uploaded
// (`weights_uploaded` says whether free_bytes was read before or after the upload). Errors
// name the numbers when the weights do not fit or the share holds less than one block.
absl::StatusOr<KvPoolBudget> KvPoolFromFreeMemory(const ir::Module& module, double fraction,
                                                  int block_size, int64_t free_bytes,
                                                  bool weights_uploaded);

// The same with free memory read from GPU `device` now (before the weights are uploaded).
absl::StatusOr<KvPoolBudget> KvPoolFromDeviceMemory(const ir::Module& module, double fraction,
                                                    int block_size, int device = 0);

}  // namespace kvcc::runtime
