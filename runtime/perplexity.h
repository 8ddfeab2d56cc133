// Perplexity of a model over token windows: each window runs as one fresh session (a prefill
// whose every position's negative log-likelihood of the next token the backend reduces, on the
// device for CUDA), accumulated in double precision.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/engine.h"
#include "runtime/log_softmax.h"

namespace kvcc::runtime {

struct PerplexityResult {
  double nll = 0;       // mean negative log-likelihood (nats) per predicted token
  double ppl = 0;       // exp(nll)
  int64_t tokens = 0;   // predicted tokens
  int64_t windows = 0;
};

// Every position's logits ([window.size()][vocab]) of `window` run as one fresh session, which
// is closed again.
absl::StatusOr<std::vector<float>> WindowLogits(Engine& engine,
                                                const std::vector<int32_t>& window);

// `progress(done, total, running_ppl)` is called after each window when set. A window shorter
// than two tokens or longer than the engine's context is an error naming it.
absl::StatusOr<PerplexityResult> Perplexity(
    Engine& engine, const std::vector<std::vector<int32_t>>& windows,
    const std::function<void(int64_t, int64_t, double)>& progress = nullptr);

}  // namespace kvcc::runtime
