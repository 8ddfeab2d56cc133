// `kvcc compile`'s weight packing: every 4-bit linear the GPU kernels can read (runtime/
// w4_repack.h) rewritten to the packed layout of codegen/w4_params.h (ir/group_quant.h: codes
// and scale/zero words, w4_layout attributes), so the backends read it straight from the
// artifact's upload with no repack and no second copy. Linears the layout cannot hold stay in
// the plain layout.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/module.h"

namespace kvcc::pipeline {

struct W4PackingSummary {
  int64_t packed = 0;               // linears rewritten
  std::vector<std::string> plain;   // "node: why" for the 4-bit linears left as they were
};

// Packs `module`'s 4-bit linears in place (already packed ones are left alone); the old
// weights are removed.
absl::StatusOr<W4PackingSummary> PackW4Linears(ir::Module& module);

// Counts of `module`'s packed and plain 4-bit linears (kvcc inspect, the manifest).
struct W4LinearCounts {
  int64_t packed = 0, plain = 0;
};
W4LinearCounts CountW4Linears(const ir::Module& module);

}  // namespace kvcc::pipeline
