// What `kvcc bench attention` and `kvcc bench prefill_attention` share: the cache names their
// --*_caches flags take, their comma-separated count lists, and the CUDA call check that ends a
// bench with the failing call named.
#pragma once

#include <string>
#include <vector>

#include "ir/kv_cache_scheme.h"

namespace kvcc::tools {

// A benchmarked cache: its flag name and K and V storage. f16, i8 / i4 (per head), i8_online,
// i4_online, fp8 (per head), k8v4 (i8 K, online i4 V), k8v4_online, i4_kchannel (per-channel
// i4 K, online i4 V).
struct BenchCacheKind {
  std::string name;
  ir::KvStorage k, v;
};
bool ParseBenchCacheKind(const std::string& name, BenchCacheKind* out);

// A comma-separated list of integers >= `min` for `flag`; a bad entry is reported on stderr
// under `bench` and gives false.
bool ParseBenchCounts(const char* bench, const char* flag, const std::string& text, int min,
                      std::vector<int>* out);

}  // namespace kvcc::tools

// Ends the calling bench (returns 1) with the failing CUDA call and its error on stderr.
#define KVCC_BENCH_CUDA_CHECK(bench, expr)                                               \
  do {                                                                                   \
    cudaError_t e_ = (expr);                                                             \
    if (e_ != cudaSuccess) {                                                             \
      std::fprintf(stderr, "bench %s: %s: %s\n", bench, #expr, cudaGetErrorString(e_));  \
      return 1;                                                                          \
    }                                                                                    \
  } while (0)
