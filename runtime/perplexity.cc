#include "runtime/perplexity.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"

namespace kvcc::runtime {

namespace {

// `run(session)` in a fresh session of `engine`, closed again whether or not it succeeded (its
// error first).
template <typename T>
absl::StatusOr<T> InFreshSession(Engine& engine,
                                 const std::function<absl::StatusOr<T>(int64_t)>& run) {
  KVCC_ASSIGN_OR_RETURN(auto session, engine.CreateSession());
  absl::StatusOr<T> result = run(session);
  absl::Status closed = engine.CloseSession(session);
  if (!result.ok()) return result.status();
  if (!closed.ok()) return closed;
  return result;
}

}  // namespace

absl::StatusOr<std::vector<float>> WindowLogits(Engine& engine,
                                                const std::vector<int32_t>& window) {
  return InFreshSession<std::vector<float>>(
      engine, [&](int64_t session) { return engine.PrefillAll(session, window); });
}

absl::StatusOr<PerplexityResult> Perplexity(
    Engine& engine, const std::vector<std::vector<int32_t>>& windows,
    const std::function<void(int64_t, int64_t, double)>& progress) {
  if (windows.empty()) return absl::InvalidArgumentError("perplexity: no windows to evaluate");
  PerplexityResult r;
  double total = 0;
  for (size_t w = 0; w < windows.size(); ++w) {
    const std::vector<int32_t>& window = windows[w];
    if (window.size() < 2 || static_cast<int64_t>(window.size()) > engine.max_context()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "perplexity: window ", w, " has ", window.size(), " tokens; expected 2..",
          engine.max_context()));
    }
    KVCC_ASSIGN_OR_RETURN(auto nll, InFreshSession<std::vector<double>>(engine, [&](int64_t session) {
      return engine.PrefillNll(session, window);
    }));
    for (double v : nll) total += v;
    r.tokens += static_cast<int64_t>(nll.size());
    ++r.windows;
    if (progress) progress(r.windows, static_cast<int64_t>(windows.size()), std::exp(total / r.tokens));
  }
  r.nll = total / r.tokens;
  r.ppl = std::exp(r.nll);
  return r;
}

}  // namespace kvcc::runtime
