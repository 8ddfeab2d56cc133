// Checks a module's structural invariants: every operand defined before use, use lists
// consistent, op schemas satisfied (types, shapes, attributes), weights sized, no cycles.
#pragma once

#include "absl/status/status.h"
#include "ir/module.h"

namespace kvcc::ir {

absl::Status Verify(const Module& module);

}  // namespace kvcc::ir
