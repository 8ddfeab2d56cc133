// Sessions over one model: an Engine owns the backend, the executor and the paged KV cache;
// sessions prefill prompts (in chunks), decode token by token (several sessions batched into
// one step), keep their cache across chat turns and give their blocks back on close.
// An engine serves one caller at a time (no internal locking).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/module.h"
#include "runtime/backend.h"
#include "runtime/executor.h"
#include "runtime/kv_cache.h"
#include "runtime/sampler.h"

namespace kvcc::runtime {

struct EngineOptions {
  int block_size = 64;
  // KV-cache pool size in tokens (rounded up to whole blocks); 0 gives room for
  // `default_sessions` sessions of the full context (each rounded up to whole blocks).
  int64_t cache_tokens = 0;
  int default_sessions = 4;
  // Longest chunk of prompt tokens one prefill step takes.
  int64_t prefill_chunk = 512;
  // Context length per session; 0 takes the model's max_position (2048 when unknown).
  int64_t max_context = 0;
  // Unquantized cache layers in f32 rather than f16 (to compare with fp32 references).
  bool full_precision_cache = false;
};

class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Create(std::shared_ptr<const ir::Module> module,
                                                        std::unique_ptr<Backend> backend,
                                                        const EngineOptions& options = {});

  absl::StatusOr<int64_t> CreateSession();
  // Frees the session's cache blocks.
  absl::Status CloseSession(int64_t session);
  // Forgets the session's tokens from `length` on (the next ones overwrite them), e.g. where a
  // re-tokenized chat history diverges from what is cached. Blocks stay with the session.
  absl::Status TruncateSession(int64_t session, int64_t length);
  // Tokens held in the session's cache; -1 for an unknown session.
  int64_t SessionLength(int64_t session) const;

  // Appends `tokens` to the session (in prefill_chunk steps) and returns the logits of the last
  // one (vocab floats).
  absl::StatusOr<std::vector<float>> Prefill(int64_t session, const std::vector<int32_t>& tokens);
  // Same, returning the logits of every appended token ([tokens][vocab], row-major).
  absl::StatusOr<std::vector<float>> PrefillAll(int64_t session,
                                                const std::vector<int32_t>& tokens);
  // Appends `tokens` like PrefillAll and returns, for i < tokens.size() - 1, the negative
  // log-likelihood of tokens[i + 1] given the session up to tokens[i] (Backend::TargetNll:
  // reduced on the device, only the values come back).
  absl::StatusOr<std::vector<double>> PrefillNll(int64_t session,
                                                 const std::vector<int32_t>& tokens);
  // One decode step: appends one token to each listed session (distinct sessions) in a single
  // batch and returns each one's next-token logits, in order.
  absl::StatusOr<std::vector<std::vector<float>>> Decode(
      const std::vector<std::pair<int64_t, int32_t>>& session_tokens);

  // Prefill, then the next token picked on the backend from the last logits by `row`
  // (Sampler::NextRow): only the id comes back from the device.
  absl::StatusOr<int32_t> PrefillSample(int64_t session, const std::vector<int32_t>& tokens,
                                        const SampleRow& row);
  // Decode, then each session's next token picked on the backend by rows[i].
  absl::StatusOr<std::vector<int32_t>> DecodeSample(
      const std::vector<std::pair<int64_t, int32_t>>& session_tokens,
      const std::vector<SampleRow>& rows);

  int64_t max_context() const { return max_context_; }
  int64_t vocab_size() const { return executor_->vocab_size(); }
  const ir::Module& module() const { return *module_; }
  Backend& backend() { return *backend_; }
  Executor& executor() { return *executor_; }
  KvCache& cache() { return *cache_; }

 private:
  Engine() = default;
  // Appends `tokens` in prefill chunks. With `all_logits` every token's logits are copied to
  // it; with `nll` the next token's negative log-likelihood of every token but the last is
  // appended to it; otherwise it returns the last token's logits [1, vocab] on the backend's
  // device.
  absl::StatusOr<Tensor> Append(int64_t session, const std::vector<int32_t>& tokens,
                                std::vector<float>* all_logits, std::vector<double>* nll = nullptr);
  // Queues one decode step and returns its logits [sessions, vocab] on the backend's device.
  absl::StatusOr<Tensor> DecodeStep(const std::vector<std::pair<int64_t, int32_t>>& session_tokens);
  absl::Status CheckRoom(int64_t session, int64_t extra) const;

  std::shared_ptr<const ir::Module> module_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<KvCache> cache_;
  EngineOptions options_;
  int64_t max_context_ = 0;
  int64_t next_session_ = 1;
  std::map<int64_t, int64_t> lengths_;
};

}  // namespace kvcc::runtime
