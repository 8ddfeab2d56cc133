// Iteration-level continuous batching over one engine: requests wait in a bounded queue, are
// admitted (FIFO) when the paged pool has blocks for their prompts, get them prefilled in chunks
// between decode steps, and every step decodes all running sequences in one batch. Blocks are
// taken as sequences grow; when the pool runs dry the most recently admitted request is
// preempted (its blocks freed, itself queued first, its tokens recomputed on readmission, as
// vLLM does). A cancelled request or a finished sequence gives its blocks back at once.
// The scheduler thread (Run) is the only one that touches the engine; Submit and Shutdown are
// for the HTTP threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/engine.h"
#include "runtime/sampler.h"
#include "serving/metrics.h"
#include "serving/request_channel.h"
#include "serving/stop_matcher.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"

namespace kvcc::serving {

struct SchedulerOptions {
  int max_batch = 64;          // sequences running at once (decoded per step)
  int max_queue = 256;         // requests waiting for admission; more are refused
  int64_t prefill_chunk = 256;  // prompt tokens prefilled per step (between decode steps)
};

struct GenerationRequest {
  std::vector<int32_t> prompt;
  int n = 1;
  int max_tokens = 16;
  runtime::SamplingParams sampling;  // sequence i samples with seed + i
  std::vector<std::string> stop;
  bool ignore_eos = false;
  int top_logprobs = -1;  // -1: no logprobs
};

class Scheduler {
 public:
  using Clock = std::chrono::steady_clock;

  // `engine` and `tokenizer` must outlive the scheduler; `metrics` may be null.
  Scheduler(runtime::Engine& engine, const tokenizer::Tokenizer& tokenizer,
            std::vector<int32_t> stop_tokens, const SchedulerOptions& options, Metrics* metrics);

  // Thread-safe. Queues a request. InvalidArgument when it can never run (empty prompt, longer
  // than the context with its max_tokens, more blocks than the pool has, a token id outside the
  // vocabulary), ResourceExhausted when the queue is full, Unavailable once shutting down.
  absl::StatusOr<std::shared_ptr<RequestChannel>> Submit(GenerationRequest request);

  // One iteration on the engine's thread: drop cancelled requests, admit, prefill one chunk's
  // worth, decode every running sequence once. Returns false when there was nothing to do.
  bool Step();
  // Steps until Shutdown has drained everything, sleeping while idle.
  void Run();
  // Thread-safe. Stops admission: queued requests fail (Unavailable), running ones go on until
  // `deadline` and are aborted then; Run returns once none is left.
  void Shutdown(Clock::time_point deadline);

  int64_t max_context() const { return max_context_; }
  int64_t num_blocks() const { return num_blocks_; }
  // The number of running sequences and queued requests (thread-safe, for tests).
  int64_t running() const;
  int64_t queued() const;

 private:
  struct Sequence {
    int index = 0;
    int64_t session = -1;
    std::optional<runtime::Sampler> sampler;
    std::vector<int32_t> history;  // prompt and generated tokens (repetition penalty)
    // Tokens to put in the cache before decoding: the prompt, or after a preemption the prompt
    // and what was generated up to `next`.
    std::vector<int32_t> pending;
    size_t prefilled = 0;  // of `pending`, in the cache
    int32_t next = -1;             // sampled, to be fed by the next decode step
    int64_t generated = 0;
    std::unique_ptr<tokenizer::StreamDecoder> decoder;
    std::unique_ptr<StopMatcher> stop;
    bool done = false;
    std::string reason;  // how it ended
    Clock::time_point last_token;
  };
  struct Request {
    GenerationRequest spec;
    std::shared_ptr<RequestChannel> channel;
    Clock::time_point arrived;
    bool first_token = false;
    std::vector<Sequence> seqs;  // empty until first admitted
  };

  int64_t BlocksNeeded(const GenerationRequest& r) const;
  // Blocks admitting `r` takes now: its unfinished sequences' pending tokens and one more.
  int64_t AdmissionBlocks(const Request& r) const;
  void Admit();
  // Gives the last admitted request's blocks back and queues it first.
  void PreemptLast();
  void Prefill();
  void Decode();
  // Takes the sampled `token` (an error aborts the sequence), streams its text and ends the
  // sequence when it should. `logits` (the host logits it was sampled from) is only needed,
  // and only given, when the request asks for log-probs; otherwise the engine sampled on the
  // backend and only the id came back.
  void Accept(Request& r, Sequence& s, const absl::StatusOr<int32_t>& token, const float* logits);
  // Ends the sequence with `e` (its finish_reason set), flushing held-back text unless
  // aborted, and gives its blocks back.
  void Finish(Request& r, Sequence& s, SequenceEvent e);
  void Finish(Request& r, Sequence& s, const std::string& reason, absl::Status error = {});
  void Abort(Request& r, const absl::Status& error);
  void DropDone();
  void PublishGauges();

  runtime::Engine& engine_;
  const tokenizer::Tokenizer& tokenizer_;
  std::vector<int32_t> stop_tokens_;
  SchedulerOptions options_;
  Metrics* metrics_;
  int64_t max_context_, num_blocks_, vocab_;

  mutable std::mutex mu_;  // guards queue_, shutting_down_, deadline_, running_count_
  std::condition_variable wake_;
  std::deque<std::unique_ptr<Request>> queue_;
  bool shutting_down_ = false;
  Clock::time_point deadline_;
  int64_t running_count_ = 0;

  std::list<std::unique_ptr<Request>> running_;  // scheduler thread only, in admission order
};

}  // namespace kvcc::serving
