// The calibration run `kvcc calibrate` and `kvcc compile` share: the model opened with the
// graph generate runs (full-precision cache), random windows of the dataset text, K and V
// observed at every layer with the progress bar on stderr.
#pragma once

#include <cstdint>
#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "passes/kv_params.h"

// Defined in cmd_calibrate.cc; `kvcc compile` reads them too.
ABSL_DECLARE_FLAG(std::string, calib_dataset);
ABSL_DECLARE_FLAG(int64_t, calib_samples);
ABSL_DECLARE_FLAG(int64_t, calib_seqlen);

namespace kvcc::tools {

struct KvCalibrationJob {
  std::string model_dir;
  std::string dataset;  // ptb | wikitext2 | tinystories | a text file
  int64_t samples = 128;
  int64_t seqlen = 2048;
  int64_t seed = 0;
  std::string device = "cpu";
};

// The parameters, with the identity of the model as loaded (before the fusions).
absl::StatusOr<passes::KvParams> RunKvCalibration(const KvCalibrationJob& job);

}  // namespace kvcc::tools
