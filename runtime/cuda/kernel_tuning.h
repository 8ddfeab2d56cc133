// tuning.json of a compiled artifact (plain C++, no CUDA, so the fuzzer builds it): per decode-attention kernel (one per cache storage and
// head count) the chosen tile configuration and, per (batch, context) bucket, the sequence
// splits, with the device they were measured on. `kvcc compile` writes the heuristic choices
// (device "") or, with --autotune, the measured winners; the CUDA backend applies them when the
// device matches and falls back to its heuristics with a warning when it does not.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ir/dtype.h"

namespace kvcc::runtime {

inline constexpr char kTuningFileName[] = "tuning.json";

// Sequence splits for decode batches up to `max_batch` sessions of up to `max_context` tokens;
// the first matching bucket wins.
struct DecodeSplitBucket {
  int max_batch = 0;
  int max_context = 0;
  int splits = 0;
};

struct TunedBucket {
  DecodeSplitBucket bucket;
  double us = 0;  // measured time of the winner; 0 for a heuristic choice
};

struct DecodeTuning {
  std::string kernel;  // DecodeTuningKey (kernel_plan.h) of the attention config
  int threads = 0;     // 0: the codegen default
  int vec_bytes = 0;
  int unroll = 0;
  std::vector<TunedBucket> buckets;  // empty: the occupancy heuristic picks the splits
};

struct KernelTuning {
  std::string device;  // the GPU's name when measured; "" for heuristic (any device)
  bool autotuned = false;
  std::vector<DecodeTuning> decode;

  // The entry for `key`, or null.
  const DecodeTuning* Find(absl::string_view key) const;
};

std::string TuningToJson(const KernelTuning& tuning);
// Parses and checks keys, types and ranges; `source` names the file in errors.
absl::StatusOr<KernelTuning> ParseTuning(absl::string_view text, const std::string& source);

}  // namespace kvcc::runtime
