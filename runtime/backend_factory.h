// Picks a backend implementation by device name; the one place that knows both the CPU and the
// CUDA backends, so the Backend interface's own unit depends on neither.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/backend.h"
#include "runtime/cuda/kernel_plan.h"

namespace kvcc::runtime {

// "cpu" (or "") -> the CPU reference backend with `threads` (<= 0: every core); "cuda" -> GPU 0,
// its kernels from `cuda_kernels` (default: the on-disk kernel cache).
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const std::string& device, int threads = 0,
                                                       CudaKernelSource cuda_kernels = {});

}  // namespace kvcc::runtime
