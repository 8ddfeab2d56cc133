// Running windows of text through a model, shared by the KV calibrator, the AWQ quantizer and
// the KV-scheme comparison: one engine sized for the longest window (refused when windows exceed
// the model's context), each window prefilled in its own session, errors naming the window.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ir/module.h"
#include "runtime/engine.h"

namespace kvcc::calibration {

// An engine on `device` (`threads` CPU threads) whose context and cache hold `context` tokens;
// a context beyond the model's max_position is an error saying to lower `length_flag`.
absl::StatusOr<std::unique_ptr<runtime::Engine>> StartWindowEngine(
    std::shared_ptr<const ir::Module> module, int64_t context, const std::string& device,
    int threads, absl::string_view length_flag);

// StartWindowEngine for the longest of `windows` (--calib-seqlen).
absl::StatusOr<std::unique_ptr<runtime::Engine>> StartCalibrationEngine(
    std::shared_ptr<const ir::Module> module, const std::vector<std::vector<int32_t>>& windows,
    const std::string& device, int threads);

struct WindowHooks {
  std::function<void(size_t)> before;     // before window i is prefilled
  std::function<absl::Status()> after;     // after each window: an error stops the run
  std::function<void(int64_t, int64_t)> progress;  // (windows done, windows)
};

// Prefills each window in a fresh session of `engine`; a failure is prefixed with
// "calibration window <i>: ".
absl::Status PrefillWindows(runtime::Engine& engine,
                            const std::vector<std::vector<int32_t>>& windows,
                            const WindowHooks& hooks);

}  // namespace kvcc::calibration
