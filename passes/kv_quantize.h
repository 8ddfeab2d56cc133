// The `kv-quantize` pass: rewrites every layer's kv_cache_write to a quantized cache scheme
// (attributes of ir/kv_cache_scheme.h, output dtype i8/i4), so the backends quantize on the
// cache write and dequantize on the attention read. Calibrated schemes take their ranges from
// the kv-calibrate pass's annotations.
#pragma once

#include <string>

#include "passes/kv_quant_scheme.h"
#include "passes/pass.h"

namespace kvcc::passes {

class KvQuantizePass : public Pass {
 public:
  explicit KvQuantizePass(KvQuantScheme scheme) : scheme_(scheme) {}
  std::string name() const override { return "kv-quantize"; }
  // Fails, changing nothing, when a calibrated scheme meets a layer without calibration (the
  // message says to run `kvcc calibrate`), or a cache already carries a quantized scheme.
  absl::Status Run(ir::Module& module) override;

 private:
  KvQuantScheme scheme_;
};

}  // namespace kvcc::passes
