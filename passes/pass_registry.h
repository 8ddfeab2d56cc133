// Every pass by name, so a pipeline can be spelled as text ("kv-calibrate,kv-quantize,fuse") and
// `--dump-after NAME` works for any of them without the caller knowing the pass classes.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "passes/kv_params.h"
#include "passes/kv_quant_scheme.h"
#include "passes/pass.h"
#include "passes/pass_manager.h"

namespace kvcc::passes {

// What a pass may need beyond the module: the cache scheme (kv-quantize) and the calibrated
// parameters with the file they came from (kv-calibrate).
struct PassContext {
  KvQuantScheme kv_scheme = KvQuantScheme::kNone;
  std::optional<ir::KvPart> kv_only_part;  // KvQuantizePass's diagnostic restriction
  const KvParams* kv_params = nullptr;
  std::string kv_params_source;
};

// Registered pass names, in the order a full pipeline runs them.
std::vector<std::string> RegisteredPassNames();

// The pass called `name`; an unknown name, or a pass whose context is missing (kv-calibrate
// without parameters), is an error listing what exists.
absl::StatusOr<std::unique_ptr<Pass>> CreatePass(absl::string_view name,
                                                 const PassContext& context);

// Appends the comma-separated `pass_list` ("" adds nothing) to `pm`.
absl::Status AddPasses(PassManager& pm, absl::string_view pass_list, const PassContext& context);

}  // namespace kvcc::passes
