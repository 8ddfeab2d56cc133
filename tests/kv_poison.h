// For GPU tests that a step reads only its own sessions' cache blocks: NaN in every other block.
#pragma once

#include <cstdint>
#include <set>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/engine.h"

namespace kvcc::testing {

// Fills every block of `engine`'s f16 cache that none of `sessions` owns, in every layer's K and
// V, with NaN (0xffff); returns how many blocks it filled.
inline absl::StatusOr<int> PoisonBlocksExcept(runtime::Engine& engine,
                                              const std::vector<int64_t>& sessions) {
  runtime::KvCache& cache = engine.cache();
  const runtime::KvCacheLayout& l = cache.layout();
  auto* backend = dynamic_cast<runtime::CudaBackend*>(&engine.backend());
  if (backend == nullptr || l.dtype != ir::DType::kF16) {
    return absl::InvalidArgumentError("poisoning needs a CUDA engine with an f16 cache");
  }
  std::set<int32_t> own;
  for (int64_t session : sessions) {
    auto table = cache.blocks().Table(session);
    if (!table.ok()) return table.status();
    own.insert((*table)->begin(), (*table)->end());
  }
  int poisoned = 0;
  for (int64_t block = 0; block < l.num_blocks; ++block) {
    if (own.count(static_cast<int32_t>(block))) continue;
    ++poisoned;
    for (int layer = 0; layer < l.num_layers; ++layer) {
      for (runtime::KvPart part : {runtime::KvPart::kKey, runtime::KvPart::kValue}) {
        auto* base = static_cast<uint8_t*>(cache.values(layer, part).raw());
        if (cudaMemsetAsync(base + block * l.BlockBytes(part), 0xff, l.BlockBytes(part),
                            backend->context()->stream()) != cudaSuccess) {
          return absl::InternalError(absl::StrCat("cudaMemsetAsync of block ", block));
        }
      }
    }
  }
  if (auto s = backend->Synchronize(); !s.ok()) return s;
  return poisoned;
}

}  // namespace kvcc::testing
