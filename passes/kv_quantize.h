// The `kv-quantize` pass: rewrites every layer's kv_cache_write to a quantized cache scheme
// (attributes of ir/kv_cache_scheme.h, output dtype i8/i4), so the backends quantize on the
// cache write and dequantize on the attention read. Calibrated schemes take their ranges from
// the kv-calibrate pass's annotations.
#pragma once

#include <optional>
#include <string>

#include "passes/kv_quant_scheme.h"
#include "passes/pass.h"

namespace kvcc::passes {

class KvQuantizePass : public Pass {
 public:
  // With `only_part`, the scheme quantizes that part alone and the other stays in fp16: a
  // diagnostic (`kvcc kvcompare --kv-quant-part k|v`) that splits a scheme's error between K
  // and V.
  explicit KvQuantizePass(KvQuantScheme scheme, std::optional<ir::KvPart> only_part = {})
      : scheme_(scheme), only_part_(only_part) {}
  std::string name() const override { return "kv-quantize"; }
  // Fails, changing nothing, when a calibrated scheme meets a layer without calibration (the
  // message says to run `kvcc calibrate`), or a cache already carries a quantized scheme.
  absl::Status Run(ir::Module& module) override;

 private:
  KvQuantScheme scheme_;
  std::optional<ir::KvPart> only_part_;
};

}  // namespace kvcc::passes
