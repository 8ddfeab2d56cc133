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
  // Without a logits callback the backend picks the tokens and only the ids come back (on the
  // GPU nothing but one id per step crosses to the host).
  const bool on_backend = !options.on_logits;
  GenerateResult result;
  auto t0 = std::chrono::steady_clock::now();
  const size_t history_before = history->size();
  history->insert(history->end(), prompt.begin(), prompt.end());
  std::vector<float> last;
  int32_t next = -1;
  absl::Status prefilled;
  if (on_backend && options.max_new_tokens > 0) {
    auto id = engine.PrefillSample(session, prompt, sampler.NextRow(*history));
    prefilled = id.status();
    if (id.ok()) next = *id;
  } else {
    auto logits = engine.Prefill(session, prompt);
    prefilled = logits.status();
    if (logits.ok()) last = *std::move(logits);
  }
  if (!prefilled.ok()) {
    history->resize(history_before);
    return prefilled;
  }
  result.prefill_seconds = Since(t0);
  auto t1 = std::chrono::steady_clock::now();
  for (int i = 0; i < options.max_new_tokens; ++i) {
    int32_t token = next;
    if (!on_backend) {
      options.on_logits(last.data(), vocab);
      KVCC_ASSIGN_OR_RETURN(token, sampler.Sample(last.data(), vocab, *history));
    }
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
    if (on_backend) {
      KVCC_ASSIGN_OR_RETURN(auto ids, engine.DecodeSample({{session, token}},
                                                          {sampler.NextRow(*history)}));
      next = ids[0];
    } else {
      KVCC_ASSIGN_OR_RETURN(auto step, engine.Decode({{session, token}}));
      last = std::move(step[0]);
    }
    ++result.decode_steps;
  }
  result.decode_seconds = Since(t1);
  return result;
}

}  // namespace kvcc::runtime
