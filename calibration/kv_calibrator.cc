#include "calibration/kv_calibrator.h"

#include "absl/strings/str_cat.h"
#include "ir/kv_cache_scheme.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"
#include "pipeline/model_opener.h"

namespace kvcc::calibration {

absl::StatusOr<passes::KvParams> CalibrateKv(std::shared_ptr<const ir::Module> module,
                                     const std::vector<std::vector<int32_t>>& windows,
                                     const passes::KvCalibrationInfo& info,
                                     const KvCalibrationRun& run) {
  if (module == nullptr) return absl::InvalidArgumentError("no module to calibrate");
  if (windows.empty()) return absl::InvalidArgumentError("no calibration windows");
  const ir::ModelConfig& config = module->config;
  for (const auto& node : module->graph.nodes()) {
    if (node->op != ir::op::kKvCacheWrite) continue;
    KVCC_ASSIGN_OR_RETURN(auto scheme, ir::ReadKvCacheScheme(*node));
    if (scheme.quantized()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "calibration needs a full-precision KV cache, but node '", node->name,
          "' is already quantized (", node->StrOr("kv_scheme", "?"), ")"));
    }
  }
  int64_t longest = 0;
  for (const auto& w : windows) longest = std::max<int64_t>(longest, w.size());
  if (config.max_position > 0 && longest > config.max_position) {
    return absl::InvalidArgumentError(absl::StrCat(
        "calibration windows of ", longest, " tokens exceed the model's context of ",
        config.max_position, " tokens; lower --calib-seqlen"));
  }
  pipeline::EngineConfig engine_config;
  engine_config.device = run.device;
  engine_config.threads = run.threads;
  engine_config.max_len = std::max<int64_t>(longest, 1);
  engine_config.cache_tokens = engine_config.max_len;
  KVCC_ASSIGN_OR_RETURN(auto engine, pipeline::StartEngine(module, engine_config));

  passes::KvStatsAccumulator stats(static_cast<int>(config.num_layers),
                           static_cast<int>(config.num_kv_heads),
                           static_cast<int>(config.head_dim));
  // The observer cannot return a status: keep the first error and report it after the step.
  absl::Status observed = absl::OkStatus();
  engine->executor().SetKvObserver([&](int layer, const float* k, const float* v,
                                          int64_t tokens, int kv_heads, int head_dim) {
    if (!observed.ok()) return;
    observed = stats.Observe(layer, k, v, tokens, kv_heads, head_dim);
  });
  for (size_t i = 0; i < windows.size(); ++i) {
    KVCC_ASSIGN_OR_RETURN(auto session, engine->CreateSession());
    auto logits = engine->Prefill(session, windows[i]);
    absl::Status closed = engine->CloseSession(session);
    if (!observed.ok()) {
      return absl::Status(observed.code(), absl::StrCat("calibration window ", i, ": ",
                                                        observed.message()));
    }
    if (!logits.ok()) {
      return absl::Status(logits.status().code(), absl::StrCat("calibration window ", i, ": ",
                                                               logits.status().message()));
    }
    if (!closed.ok()) return closed;
    if (run.progress) run.progress(static_cast<int64_t>(i) + 1, windows.size());
  }
  engine->executor().SetKvObserver(nullptr);
  KVCC_RETURN_IF_ERROR(stats.CheckComplete());
  passes::KvParams params;
  params.model = passes::IdentityOf(*module);
  params.calibration = info;
  params.calibration.samples = static_cast<int64_t>(windows.size());
  params.layers = stats.layers();
  return params;
}

}  // namespace kvcc::calibration
