// `kvcc compile --autotune`: times decode-attention candidates (vector width x unroll, and the
// sequence splits per (batch, context) bucket) on the present GPU with CUDA events, over a
// zero-filled paged cache (cycling through copies of small buckets, so they are not timed from
// L2), and returns the winners as tuning.json records them. A candidate is
// kept only if it is within 2% of the heuristic configuration in every bucket, so the tuned
// artifact is not slower than the heuristics anywhere it was measured.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "codegen/kernel_store.h"
#include "runtime/cuda/cuda_attention.h"
#include "runtime/cuda/kernel_tuning.h"

namespace kvcc::runtime {

struct DecodeAutotuneOptions {
  int max_batch = 64;      // buckets up to this many sessions
  int max_context = 2048;  // and this many cached tokens per session
  int iters = 20;          // timed calls per measurement
  std::function<void(const std::string&)> log;  // one line per config and bucket
};

absl::StatusOr<KernelTuning> AutotuneDecode(const std::vector<CudaAttentionConfig>& configs,
                                            const DecodeAutotuneOptions& options,
                                            codegen::KernelStore* store);

}  // namespace kvcc::runtime
