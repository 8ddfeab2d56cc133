// Picks a backend implementation by device name; the one place that knows both the CPU and the
// CUDA backends, so the Backend interface's own unit depends on neither.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/backend.h"

namespace kvcc::runtime {

// "cpu" (or "") -> the CPU reference backend with `threads` (<= 0: every core); "cuda" -> GPU 0.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const std::string& device, int threads = 0);

}  // namespace kvcc::runtime
