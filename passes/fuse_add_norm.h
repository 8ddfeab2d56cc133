// The `fuse-add-norm` pass: rewrites `s = add(a, b); n = rms_norm(s, w)` into one
// `add_rms_norm(a, b, w)` whose outputs are (s, n), so a backend reads the residual row once
// for the sum and its norm. The residual stream keeps flowing through the first output.
#pragma once

#include <string>

#include "passes/pass.h"

namespace kvcc::passes {

class FuseAddNormPass : public Pass {
 public:
  std::string name() const override { return "fuse-add-norm"; }
  absl::Status Run(ir::Module& module) override;

  // Pairs fused by the last Run (for logs and tests).
  int fused() const { return fused_; }

 private:
  int fused_ = 0;
};

}  // namespace kvcc::passes
