// `kvcc compile --autotune` for the linear layers: for every GEMM shape of the plan (each
// (out, in, dtype) of the model's linears and LM head, at each decode batch bucket 1, 2, 4 ..
// max-batch and at the prefill chunk), times the top cuBLASLt heuristic algorithms with CUDA
// events (cycling through weight copies that span twice the L2, so they come from memory as in
// a step), each rebuilt from its config attributes as the runtime rebuilds a stored one, and
// keeps the fastest only when it beats the heuristic's first choice by more than the noise
// margin; otherwise the entry says heuristic. So a tuned artifact's GEMMs are never slower
// than the heuristic's where they were measured.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/dtype.h"
#include "ir/module.h"
#include "runtime/cuda/kernel_tuning.h"

namespace kvcc::runtime {

struct GemmShape {
  int64_t n = 0;  // out features
  int64_t k = 0;  // in features
  ir::DType dtype = ir::DType::kF16;  // what cuBLASLt multiplies (f32 weights run as f16)
  bool operator<(const GemmShape& o) const;
};

// The distinct GEMM weight shapes of `module`'s dense linears (4-bit ones take other kernels)
// and LM head, in graph order.
std::vector<GemmShape> PlanGemmShapes(const ir::Module& module);

// The token counts measured: 1, 2, 4 .. below max_batch, max_batch, and the prefill chunk.
std::vector<int64_t> GemmTokenBuckets(int max_batch, int64_t prefill_chunk);

struct GemmAutotuneOptions {
  int max_batch = 64;
  int64_t prefill_chunk = 512;
  int candidates = 8;  // heuristic algorithms timed per shape
  int iters = 20;      // calls per timing
  int rounds = 3;      // timings per candidate, interleaved; the fastest counts
  // A candidate replaces the heuristic only when at least this much faster.
  double margin = 0.03;
  std::function<void(const std::string&)> log;  // one line per shape
};

// Measures every shape x bucket on GPU 0 and fills tuning->gemm and cublaslt_version.
absl::Status AutotuneGemms(const std::vector<GemmShape>& shapes,
                           const GemmAutotuneOptions& options, KernelTuning* tuning);

}  // namespace kvcc::runtime
