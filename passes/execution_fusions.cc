#include "passes/execution_fusions.h"

#include <memory>

#include "ir/status_macros.h"
#include "passes/pass_manager.h"
#include "passes/pass_registry.h"

namespace kvcc::passes {

absl::Status ApplyExecutionFusions(ir::Module& module) {
  PassManager pm;
  KVCC_RETURN_IF_ERROR(AddPasses(pm, kExecutionFusions, {}));
  return pm.Run(module);
}

}  // namespace kvcc::passes
