#include "passes/pass_registry.h"

#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "ir/status_macros.h"
#include "passes/fuse.h"
#include "passes/fuse_add_norm.h"
#include "passes/kv_calibration_pass.h"
#include "passes/kv_quantize.h"

namespace kvcc::passes {
namespace {

using Factory = std::function<absl::StatusOr<std::unique_ptr<Pass>>(const PassContext&)>;

// An explicit table rather than static registration: a pass in a static library would be
// dropped by the linker when nothing references its object file.
const std::vector<std::pair<std::string, Factory>>& Table() {
  static const auto* table = new std::vector<std::pair<std::string, Factory>>{
      {"kv-calibrate",
       [](const PassContext& c) -> absl::StatusOr<std::unique_ptr<Pass>> {
         if (c.kv_params == nullptr) {
           return absl::FailedPreconditionError(
               "pass kv-calibrate needs calibration parameters (a kv_params.json)");
         }
         return std::unique_ptr<Pass>(new KvCalibrationPass(*c.kv_params, c.kv_params_source,
                                                              NeedsChannelRanges(c.kv_scheme)));
       }},
      {"kv-quantize",
       [](const PassContext& c) -> absl::StatusOr<std::unique_ptr<Pass>> {
         return std::unique_ptr<Pass>(new KvQuantizePass(c.kv_scheme, c.kv_only_part));
       }},
      {"fuse",
       [](const PassContext&) -> absl::StatusOr<std::unique_ptr<Pass>> {
         return std::unique_ptr<Pass>(new FusePass());
       }},
      {"fuse-add-norm",
       [](const PassContext&) -> absl::StatusOr<std::unique_ptr<Pass>> {
         return std::unique_ptr<Pass>(new FuseAddNormPass());
       }},
  };
  return *table;
}

}  // namespace

std::vector<std::string> RegisteredPassNames() {
  std::vector<std::string> names;
  for (const auto& [name, factory] : Table()) names.push_back(name);
  return names;
}

absl::StatusOr<std::unique_ptr<Pass>> CreatePass(absl::string_view name,
                                                 const PassContext& context) {
  for (const auto& [registered, factory] : Table()) {
    if (registered == name) return factory(context);
  }
  return absl::NotFoundError(absl::StrCat("unknown pass '", name, "'; the passes are ",
                                          absl::StrJoin(RegisteredPassNames(), ", ")));
}

absl::Status AddPasses(PassManager& pm, absl::string_view pass_list, const PassContext& context) {
  for (absl::string_view name : absl::StrSplit(pass_list, ',', absl::SkipWhitespace())) {
    KVCC_ASSIGN_OR_RETURN(std::unique_ptr<Pass> pass, CreatePass(name, context));
    pm.Add(std::move(pass));
  }
  return absl::OkStatus();
}

}  // namespace kvcc::passes
