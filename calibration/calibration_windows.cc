#include "calibration/calibration_windows.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"
#include "pipeline/model_opener.h"

namespace kvcc::calibration {

absl::StatusOr<std::unique_ptr<runtime::Engine>> StartWindowEngine(
    std::shared_ptr<const ir::Module> module, int64_t context, const std::string& device,
    int threads, absl::string_view length_flag) {
  const int64_t model_context = module->config.max_position;
  if (model_context > 0 && context > model_context) {
    return absl::InvalidArgumentError(absl::StrCat(
        "windows of ", context, " tokens exceed the model's context of ", model_context,
        " tokens; lower ", length_flag));
  }
  pipeline::EngineConfig config;
  config.device = device;
  config.threads = threads;
  config.max_len = std::max<int64_t>(context, 1);
  config.cache_tokens = config.max_len;
  return pipeline::StartEngine(std::move(module), config);
}

absl::StatusOr<std::unique_ptr<runtime::Engine>> StartCalibrationEngine(
    std::shared_ptr<const ir::Module> module, const std::vector<std::vector<int32_t>>& windows,
    const std::string& device, int threads) {
  int64_t longest = 0;
  for (const auto& w : windows) longest = std::max<int64_t>(longest, w.size());
  return StartWindowEngine(std::move(module), longest, device, threads, "--calib-seqlen");
}

absl::Status PrefillWindows(runtime::Engine& engine,
                            const std::vector<std::vector<int32_t>>& windows,
                            const WindowHooks& hooks) {
  for (size_t i = 0; i < windows.size(); ++i) {
    if (hooks.before) hooks.before(i);
    KVCC_ASSIGN_OR_RETURN(auto session, engine.CreateSession());
    auto logits = engine.Prefill(session, windows[i]);
    absl::Status closed = engine.CloseSession(session);
    absl::Status status = logits.status();
    if (status.ok() && hooks.after) status = hooks.after();
    if (!status.ok()) {
      return absl::Status(status.code(),
                          absl::StrCat("calibration window ", i, ": ", status.message()));
    }
    KVCC_RETURN_IF_ERROR(closed);
    if (hooks.progress) hooks.progress(static_cast<int64_t>(i) + 1, windows.size());
  }
  return absl::OkStatus();
}

}  // namespace kvcc::calibration
