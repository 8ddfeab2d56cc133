// A Pass transforms an ir::Module in place; the PassManager runs a pipeline of them and checks
// the module after each one, so a pass only has to keep the module valid, not re-verify it.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "ir/module.h"

namespace kvcc::passes {

class Pass {
 public:
  virtual ~Pass() = default;
  // Stable identifier used by `--dump-after NAME` and in error messages ("fuse", "kv-quantize").
  virtual std::string name() const = 0;
  virtual absl::Status Run(ir::Module& module) = 0;
};

}  // namespace kvcc::passes
