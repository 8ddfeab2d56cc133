#include "passes/kv_calibrator.h"

#include "absl/strings/str_cat.h"
#include "ir/kv_cache_scheme.h"
#include "runtime/backend.h"
#include "runtime/engine.h"

namespace kvcc::passes {

absl::StatusOr<KvParams> CalibrateKv(std::shared_ptr<const ir::Module> module,
                                     const std::vector<std::vector<int32_t>>& windows,
                                     const KvCalibrationInfo& info,
                                     const KvCalibrationRun& run) {
  if (module == nullptr) return absl::InvalidArgumentError("no module to calibrate");
  if (windows.empty()) return absl::InvalidArgumentError("no calibration windows");
  const ir::ModelConfig& config = module->config;
  for (const auto& node : module->graph.nodes()) {
    if (node->op != "kv_cache_write") continue;
    auto scheme = ir::ReadKvCacheScheme(*node);
    if (!scheme.ok()) return scheme.status();
    if (scheme->quantized()) {
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
  auto backend = runtime::CreateBackend(run.device, run.threads);
  if (!backend.ok()) return backend.status();
  runtime::EngineOptions options;
  options.max_context = std::max<int64_t>(longest, 1);
  options.cache_tokens = options.max_context;
  options.default_sessions = 1;
  auto engine = runtime::Engine::Create(module, std::move(*backend), options);
  if (!engine.ok()) return engine.status();

  KvStatsAccumulator stats(static_cast<int>(config.num_layers),
                           static_cast<int>(config.num_kv_heads),
                           static_cast<int>(config.head_dim));
  // The observer cannot return a status: keep the first error and report it after the step.
  absl::Status observed = absl::OkStatus();
  (*engine)->executor().SetKvObserver([&](int layer, const float* k, const float* v,
                                          int64_t tokens, int kv_heads, int head_dim) {
    if (!observed.ok()) return;
    observed = stats.Observe(layer, k, v, tokens, kv_heads, head_dim);
  });
  for (size_t i = 0; i < windows.size(); ++i) {
    auto session = (*engine)->CreateSession();
    if (!session.ok()) return session.status();
    auto logits = (*engine)->Prefill(*session, windows[i]);
    absl::Status closed = (*engine)->CloseSession(*session);
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
  (*engine)->executor().SetKvObserver(nullptr);
  if (auto s = stats.CheckComplete(); !s.ok()) return s;
  KvParams params;
  params.model = IdentityOf(config);
  params.calibration = info;
  params.calibration.samples = static_cast<int64_t>(windows.size());
  params.layers = stats.layers();
  return params;
}

}  // namespace kvcc::passes
