// A synthetic AutoAWQ-GEMM checkpoint for the tests that run 4-bit models: seeded float
// weights of a models/configs shape quantized round-to-nearest by calibration/awq_quantizer.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace kvcc::testing {

// Writes the float checkpoint of `config` (a path under models/configs) to `dir`/src and its
// RTN AWQ checkpoint of `group_size` (with a synthetic tokenizer.json) to `dir`/awq; returns
// the latter.
absl::StatusOr<std::string> WriteAwqCheckpoint(const std::string& config, const std::string& dir,
                                               int64_t group_size, uint64_t seed);

}  // namespace kvcc::testing
