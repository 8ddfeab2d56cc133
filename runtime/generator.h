// Autoregressive generation on one engine session: feeds a prompt, samples tokens one decode
// step at a time and hands each to a callback (streaming), stopping at a stop token, at the
// token limit, or at the context length. Times prefill and decode separately.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/engine.h"
#include "runtime/sampler.h"

namespace kvcc::runtime {

struct GenerateOptions {
  int max_new_tokens = 128;
  std::vector<int32_t> stop_tokens;  // e.g. EOS; the stop token is not passed to on_token
  // Sees the logits (vocab floats) each token is sampled from, before sampling (diagnostics,
  // `kvcc generate --dump-logits`).
  std::function<void(const float* logits, int64_t vocab)> on_logits;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated, without the stop token
  bool stopped = false;         // ended on a stop token
  bool context_full = false;    // ended because the session reached the context length
  double prefill_seconds = 0;
  double decode_seconds = 0;
  int64_t decode_steps = 0;
};

// Appends `prompt` (non-empty) to `session`, then generates. Each sampled token is fed back
// (and so cached) before the next is sampled; the last one is not, so a caller continuing the
// session starts its next prompt with it (kvcc chat re-tokenizes the conversation and keeps
// the longest cached prefix). `history` (prompt and generated tokens of the whole session) feeds the
// repetition penalty and is extended here. `on_token` returning an error stops generation
// with that error.
absl::StatusOr<GenerateResult> Generate(Engine& engine, int64_t session,
                                        const std::vector<int32_t>& prompt, Sampler& sampler,
                                        const GenerateOptions& options,
                                        std::vector<int32_t>* history,
                                        const std::function<absl::Status(int32_t)>& on_token);

}  // namespace kvcc::runtime
