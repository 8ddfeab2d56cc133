#include "calibration/kv_calibrator.h"

#include "absl/strings/str_cat.h"
#include "calibration/calibration_windows.h"
#include "ir/kv_cache_scheme.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"

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
  KVCC_ASSIGN_OR_RETURN(auto engine,
                        StartCalibrationEngine(module, windows, run.device, run.threads));

  passes::KvStatsAccumulator stats(static_cast<int>(config.num_layers),
                           static_cast<int>(config.num_kv_heads),
                           static_cast<int>(config.head_dim));
  // The observer cannot return a status: keep the first error and report it after the step.
  absl::Status observed = absl::OkStatus();
  // Reduced on the backend: per step and layer only the channels' ranges leave the device.
  auto ranges = [](const runtime::ColumnStats& c) {
    std::vector<passes::RangeStat> r(c.min.size());
    for (size_t i = 0; i < r.size(); ++i) r[i] = {c.min[i], c.max[i], c.absmax[i]};
    return r;
  };
  engine->executor().SetKvRangeObserver([&](int layer, const runtime::ColumnStats& k,
                                            const runtime::ColumnStats& v, int64_t tokens) {
    if (!observed.ok()) return;
    observed = stats.ObserveChannels(layer, ranges(k), k.nonfinite, ranges(v), v.nonfinite, tokens);
  });
  WindowHooks hooks;
  hooks.after = [&] { return observed; };
  hooks.progress = run.progress;
  KVCC_RETURN_IF_ERROR(PrefillWindows(*engine, windows, hooks));
  engine->executor().SetKvRangeObserver(nullptr);
  KVCC_RETURN_IF_ERROR(stats.CheckComplete());
  passes::KvParams params;
  params.model = passes::IdentityOf(*module);
  params.calibration = info;
  params.calibration.samples = static_cast<int64_t>(windows.size());
  params.layers = stats.layers();
  return params;
}

}  // namespace kvcc::calibration
