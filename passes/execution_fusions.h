// The fusions every model gets when it is opened for execution (generate, chat, ppl on the CPU
// and CUDA backends alike): q/k/v and gate/up projections merged into wider GEMMs (`fuse`),
// then each residual add merged with the RMSNorm that reads it (`fuse-add-norm`).
#pragma once

#include "absl/status/status.h"
#include "ir/module.h"

namespace kvcc::passes {

// The fusions as a pass list (passes/pass_registry.h).
inline constexpr char kExecutionFusions[] = "fuse,fuse-add-norm";

// Runs fuse + fuse-add-norm through a PassManager (the module is verified after each).
absl::Status ApplyExecutionFusions(ir::Module& module);

}  // namespace kvcc::passes
