// What the autotuners (decode attention, cuBLASLt GEMMs) share to time candidates on the GPU:
// CUDA errors as Status, scratch device memory, how many bytes a timing loop must cycle
// through to read from memory rather than L2, and CUDA-event timing of repeated calls.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvcc::runtime {

// OK for cudaSuccess; otherwise clears the sticky error and returns "TUNER: WHAT: reason".
absl::Status AutotuneCudaStatus(cudaError_t err, absl::string_view tuner, absl::string_view what);

// Device memory from cudaMalloc (at least 16 bytes), every byte set to `fill`, freed on scope
// exit; errors name `tuner`.
class AutotuneScratch {
 public:
  AutotuneScratch() = default;
  AutotuneScratch(const AutotuneScratch&) = delete;
  AutotuneScratch& operator=(const AutotuneScratch&) = delete;
  ~AutotuneScratch();
  absl::Status Allocate(size_t bytes, int fill, absl::string_view tuner);
  void* p = nullptr;
};

// Twice the device's L2 (64 MiB assumed when it cannot be read): a timing loop that cycles
// through this many bytes of operands reads them from memory, as a step reads each layer's.
int64_t L2BustBytes();

// Microseconds per call of `run`, queued on `stream`: `warmups` calls, then `iters` timed
// between two CUDA events. The first failing call or CUDA error is returned.
absl::StatusOr<double> TimeCalls(cudaStream_t stream, int warmups, int iters,
                                 absl::FunctionRef<absl::Status()> run, absl::string_view tuner);

}  // namespace kvcc::runtime
