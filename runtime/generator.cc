#include "runtime/generator.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"

namespace kvcc::runtime {
namespace {
double Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

absl::StatusOr<GenerateResult> Generate(Engine& engine, int64_t session,
                                        const std::vector<int32_t>& prompt, Sampler& sampler,
                                        const GenerateOptions& options,
                                        std::vector<int32_t>* history,
                                        const std::function<absl::Status(int32_t)>& on_token) {
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt is empty (no tokens)");
  if (options.max_new_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max new tokens is ", options.max_new_tokens, "; expected >= 0"));
  }
  const int64_t vocab = engine.vocab_size();
  GenerateResult result;
  auto t0 = std::chrono::steady_clock::now();
  KVCC_ASSIGN_OR_RETURN(auto logits, engine.Prefill(session, prompt));
  result.prefill_seconds = Since(t0);
  history->insert(history->end(), prompt.begin(), prompt.end());
  std::vector<float> last = std::move(logits);
  auto t1 = std::chrono::steady_clock::now();
  for (int i = 0; i < options.max_new_tokens; ++i) {
    if (options.on_logits) options.on_logits(last.data(), vocab);
    KVCC_ASSIGN_OR_RETURN(auto token, sampler.Sample(last.data(), vocab, *history));
    if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), token) !=
        options.stop_tokens.end()) {
      result.stopped = true;
      break;
    }
    result.tokens.push_back(token);
    history->push_back(token);
    KVCC_RETURN_IF_ERROR(on_token(token));
    if (i + 1 == options.max_new_tokens) break;
    if (engine.SessionLength(session) + 1 > engine.max_context()) {
      result.context_full = true;
      break;
    }
    KVCC_ASSIGN_OR_RETURN(auto step, engine.Decode({{session, token}}));
    ++result.decode_steps;
    last = std::move(step[0]);
  }
  result.decode_seconds = Since(t1);
  return result;
}

}  // namespace kvcc::runtime
