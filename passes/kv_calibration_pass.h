// The `kv-calibrate` pass: annotates every kv_cache_write with its layer's calibrated K/V ranges
// (per kv head: calib_k_min, calib_k_max, calib_v_min, calib_v_max; with `per_channel` also
// calib_k_ch_min, ... per channel, head-major) from a KV parameter file, after checking the file
// was made for this model. kv-quantize derives zp/scale from these.
#pragma once

#include <string>

#include "passes/kv_params.h"
#include "passes/pass.h"
#include "passes/kv_quant_scheme.h"

namespace kvcc::passes {

class KvCalibrationPass : public Pass {
 public:
  // `source` names where the parameters came from (a file path) in errors and metadata.
  KvCalibrationPass(KvParams params, std::string source, bool per_channel = false)
      : params_(std::move(params)), source_(std::move(source)), per_channel_(per_channel) {}
  std::string name() const override { return "kv-calibrate"; }
  absl::Status Run(ir::Module& module) override;

 private:
  KvParams params_;
  std::string source_;
  bool per_channel_;
};

// The calibrated ranges a kv-calibrate pass left on `kv_cache_write`, or NotFound when it
// carries none.
absl::StatusOr<KvLayerRanges> ReadCalibratedRanges(const ir::Node& kv_cache_write);

}  // namespace kvcc::passes
