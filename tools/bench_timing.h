// What `kvcc bench w4` and `kvcc bench gemv` share to time a call on the CUDA backend: back to
// back on the stream (host launch gaps included), or replayed from a CUDA graph of many calls
// (what a captured decode step pays: the kernels alone).
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/cuda/cuda_backend.h"

namespace kvcc::tools {

// Mean seconds per call of fn over `iters` calls after warm-up (the stream drained around).
absl::StatusOr<double> TimeCalls(runtime::CudaBackend& gpu, int iters,
                                 const std::function<absl::Status()>& fn);

// Mean seconds per call of fn replayed from a CUDA graph of `iters` calls (captured after a
// warm-up that makes every plan and buffer the calls use).
absl::StatusOr<double> TimeGraph(runtime::CudaBackend& gpu, int iters,
                                 const std::function<absl::Status()>& fn);

// Microseconds with one decimal, or "-" for an error.
std::string Us(const absl::StatusOr<double>& t);

}  // namespace kvcc::tools
