#include "passes/kv_quant_flags.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "passes/kv_calibration_pass.h"
#include "passes/kv_params.h"
#include "passes/kv_quantize.h"
#include "passes/pass_manager.h"

namespace kvcc::passes {

absl::StatusOr<KvQuantScheme> ResolveKvQuantScheme(int quant_policy,
                                                   const std::string& kv_quant) {
  if (quant_policy != 0 && quant_policy != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--quant-policy ", quant_policy,
        " is not supported: 0 = fp16 cache, 4 = int8 per-layer (calibrated); use --kv-quant "
        "NAME for the other schemes"));
  }
  if (kv_quant.empty()) {
    return quant_policy == 4 ? KvQuantScheme::kInt8PerLayer : KvQuantScheme::kNone;
  }
  auto scheme = ParseKvQuantScheme(kv_quant);
  if (!scheme.ok()) return scheme.status();
  if (quant_policy == 4 && *scheme != KvQuantScheme::kInt8PerLayer) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--quant-policy 4 (int8-per-layer) contradicts --kv-quant ", kv_quant, "; give one"));
  }
  return *scheme;
}

absl::StatusOr<KvQuantScheme> ApplyKvQuantFromFlags(ir::Module& module,
                                                    const std::string& model_dir,
                                                    int quant_policy, const std::string& kv_quant,
                                                    const std::string& kv_params_path,
                                                    std::ostream* dump,
                                                    const std::string& dump_after) {
  auto scheme = ResolveKvQuantScheme(quant_policy, kv_quant);
  if (!scheme.ok()) return scheme.status();
  PassManager pm;
  if (NeedsCalibration(*scheme)) {
    const std::string path = kv_params_path.empty() ? KvParamsPath(model_dir) : kv_params_path;
    auto params = ReadKvParams(path);
    if (!params.ok()) {
      if (absl::IsNotFound(params.status())) {
        const std::string fix =
            kv_params_path.empty()
                ? absl::StrCat("run `kvcc calibrate ",
                               model_dir.empty() ? "<model_dir>" : model_dir,
                               "` first, or pass --kv-params FILE")
                : "check --kv-params, or run `kvcc calibrate <model_dir> --work-dir DIR` to make it";
        return absl::NotFoundError(absl::StrCat("KV-cache scheme ", KvQuantSchemeName(*scheme),
                                                " needs calibration parameters but ", path,
                                                " does not exist: ", fix));
      }
      return params.status();
    }
    pm.Add(std::make_unique<KvCalibrationPass>(std::move(*params), path));
  }
  if (*scheme != KvQuantScheme::kNone) pm.Add(std::make_unique<KvQuantizePass>(*scheme));
  if (dump != nullptr && !dump_after.empty()) pm.DumpAfter(dump_after, dump);
  if (auto s = pm.Run(module); !s.ok()) return s;
  return *scheme;
}

}  // namespace kvcc::passes
