// The `fuse` pass: merges the per-layer q/k/v projections into one `linear` + `split`, and the
// MLP's gate/up projections likewise, so a backend runs one wider GEMM instead of three (two).
// The result is the same form the importer gives InternLM2's wqkv (graph convention).
#pragma once

#include <string>

#include "passes/pass.h"

namespace kvcc::passes {

struct FuseOptions {
  bool qkv = true;
  bool gate_up = true;
};

// Fuses a group of `linear` nodes only when it is exactly safe: same activation input, weights
// of one dtype and one input width (float, or 4-bit in one layout of ir/group_quant.h with one
// group size, scale dtype and zero points in all or none), either all or none with a bias
// (biases of one dtype). Anything else is left untouched. The fused weight (bias, scales,
// zeros) is a new buffer owned by the module: rows of the members, concatenated in order.
class FusePass : public Pass {
 public:
  explicit FusePass(FuseOptions options = {}) : options_(options) {}
  std::string name() const override { return "fuse"; }
  absl::Status Run(ir::Module& module) override;

  // Groups fused by the last Run (for logs and tests).
  int fused_qkv() const { return fused_qkv_; }
  int fused_gate_up() const { return fused_gate_up_; }

 private:
  FuseOptions options_;
  int fused_qkv_ = 0;
  int fused_gate_up_ = 0;
};

}  // namespace kvcc::passes
