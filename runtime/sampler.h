// Next-token selection from logits: greedy, or temperature / top-k / top-p sampling, with an
// optional repetition penalty, applied in transformers' order (penalty, temperature, top-k,
// top-p). Each sampler owns a std::mt19937_64 seeded from its parameters, so a session's
// sampled continuation is reproducible.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvcc::runtime {

struct SamplingParams {
  double temperature = 0.0;  // 0: greedy
  int top_k = 0;             // 0: off
  double top_p = 1.0;        // (0, 1]; 1: off
  double repetition_penalty = 1.0;  // > 0; 1: off
  uint64_t seed = 0;

  // Rejects negative or non-finite temperature, top_k < 0, top_p outside (0, 1] and a
  // repetition penalty <= 0, naming the value.
  absl::Status Validate() const;
  bool greedy() const { return temperature == 0.0; }
};

// One pick, resolved on the host: Sampler::Pick's arguments (Backend::SampleRows takes one per
// row of logits).
struct SampleRow {
  SamplingParams params;
  double uniform = 0;                             // in [0, 1); unused when greedy
  const std::vector<int32_t>* history = nullptr;  // the repetition penalty's tokens; may be null
};

class Sampler {
 public:
  static absl::StatusOr<Sampler> Create(const SamplingParams& params);

  // Picks a token from `vocab` logits; `history` (prompt and generated tokens) feeds the
  // repetition penalty.
  absl::StatusOr<int32_t> Sample(const float* logits, int64_t vocab,
                                 const std::vector<int32_t>& history);

  // The probabilities Sample draws from (after penalty, temperature, top-k and top-p; one-hot
  // for greedy), for tests and diagnostics.
  std::vector<double> Distribution(const float* logits, int64_t vocab,
                                   const std::vector<int32_t>& history) const;

  // The generator's next draw in [0, 1) (53 random bits). Sample takes one per non-greedy
  // pick; sampling on a device takes it here, so the device picks from the same draw and a
  // session continues identically whichever side samples.
  double NextUniform();
  // The next pick as a SampleRow (taking a draw unless greedy), reading `history` (which must
  // outlive the row).
  SampleRow NextRow(const std::vector<int32_t>& history) {
    return SampleRow{params_, params_.greedy() ? 0.0 : NextUniform(), &history};
  }
  // What Sample picks for `params` (valid) given the draw `uniform` (unused when greedy).
  static absl::StatusOr<int32_t> Pick(const SamplingParams& params, const float* logits,
                                      int64_t vocab, const std::vector<int32_t>& history,
                                      double uniform);

  const SamplingParams& params() const { return params_; }

 private:
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}
  SamplingParams params_;
  std::mt19937_64 rng_;
};

}  // namespace kvcc::runtime
