#include "passes/pass_manager.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ir/printer.h"
#include "ir/verifier.h"

namespace kvcc::passes {

std::vector<std::string> PassManager::PassNames() const {
  std::vector<std::string> names;
  for (const auto& p : passes_) names.push_back(p->name());
  return names;
}

absl::Status PassManager::Run(ir::Module& module) {
  const std::vector<std::string> names = PassNames();
  if (!dump_after_.empty()) {
    bool known = false;
    for (const std::string& n : names) known = known || n == dump_after_;
    if (!known) {
      return absl::InvalidArgumentError(
          absl::StrCat("--dump-after '", dump_after_, "' names no pass of the pipeline (",
                       absl::StrJoin(names, ", "), ")"));
    }
  }
  for (const auto& pass : passes_) {
    if (absl::Status s = pass->Run(module); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("pass '", pass->name(), "': ", s.message()));
    }
    if (absl::Status s = ir::Verify(module); !s.ok()) {
      return absl::InternalError(absl::StrCat("module is invalid after pass '", pass->name(),
                                              "': ", s.message()));
    }
    if (dump_stream_ != nullptr && pass->name() == dump_after_) {
      *dump_stream_ << ir::Print(module);
    }
  }
  return absl::OkStatus();
}

}  // namespace kvcc::passes
