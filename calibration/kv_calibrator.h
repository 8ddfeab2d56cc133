// Calibration run: feeds token windows through the runtime's engine and observes, at every layer,
// K after rotary (exactly what the cache receives) and V, accumulating the KV statistics that
// make up a KV parameter file.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/module.h"
#include "passes/kv_params.h"

namespace kvcc::calibration {

struct KvCalibrationRun {
  std::string device = "cpu";  // runtime backend
  int threads = 0;             // <= 0: every core
  // Called after each window with (windows done, windows total).
  std::function<void(int64_t, int64_t)> progress;
};

// Runs every window (each in a fresh session, so each starts at position 0) through `module`
// and returns the statistics with the model identity filled in and `info` recorded. The module
// must have an unquantized cache (calibration observes full-precision K/V). A window longer
// than the model's context, or non-finite K/V, is an error naming the window or layer.
absl::StatusOr<passes::KvParams> CalibrateKv(std::shared_ptr<const ir::Module> module,
                                     const std::vector<std::vector<int32_t>>& windows,
                                     const passes::KvCalibrationInfo& info,
                                     const KvCalibrationRun& run = {});

}  // namespace kvcc::calibration
