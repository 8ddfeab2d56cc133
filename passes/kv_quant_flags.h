// The one entry point the model-running commands (generate, chat, ppl, ...) call to honour
// `--quant-policy`, `--kv-quant` and `--kv-params`: picks the scheme, loads the calibration file
// when the scheme needs one, and runs kv-calibrate + kv-quantize through a PassManager.
#pragma once

#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "ir/module.h"
#include "passes/kv_quant_scheme.h"

namespace kvcc::passes {

// --quant-policy 0 (or unset) and --kv-quant "" -> fp16; --quant-policy 4 -> int8-per-layer;
// --kv-quant NAME -> that scheme. A policy other than 0/4, an unknown name, or a policy that
// contradicts the name is an error.
absl::StatusOr<KvQuantScheme> ResolveKvQuantScheme(int quant_policy, const std::string& kv_quant);

// Applies the scheme the flags select to `module`. A calibrated scheme reads `kv_params_path`,
// or kv_params.json in `model_dir` when that is empty; a missing file is an error telling to run
// `kvcc calibrate`. With `dump` set, ir::Print follows the pass named `dump_after`. Returns the
// applied scheme (kNone leaves the module unchanged).
absl::StatusOr<KvQuantScheme> ApplyKvQuantFromFlags(ir::Module& module,
                                                    const std::string& model_dir,
                                                    int quant_policy, const std::string& kv_quant,
                                                    const std::string& kv_params_path,
                                                    std::ostream* dump = nullptr,
                                                    const std::string& dump_after = "");

}  // namespace kvcc::passes
