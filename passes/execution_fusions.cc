#include "passes/execution_fusions.h"

#include <memory>

#include "passes/fuse.h"
#include "passes/fuse_add_norm.h"
#include "passes/pass_manager.h"

namespace kvcc::passes {

absl::Status ApplyExecutionFusions(ir::Module& module) {
  PassManager pm;
  pm.Add(std::make_unique<FusePass>());
  pm.Add(std::make_unique<FuseAddNormPass>());
  return pm.Run(module);
}

}  // namespace kvcc::passes
