// A deterministic, readable text dump of a module, for golden tests and `--dump-after`.
#pragma once

#include <string>

#include "ir/module.h"

namespace kvcc::ir {

std::string Print(const Module& module);

}  // namespace kvcc::ir
