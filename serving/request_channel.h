// What passes between the scheduler thread and the HTTP thread serving one request: the
// scheduler pushes each sequence's new text, logprobs and end; the HTTP side waits for them and
// can cancel (a client that went away), which the scheduler sees before its next step.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace kvcc::serving {

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // most likely first
};

struct SequenceEvent {
  int index = 0;       // which of the request's n sequences
  std::string text;    // text that became final (stop strings removed)
  std::vector<TokenLogprob> logprobs;  // one per token generated since the last event
  int64_t tokens = 0;  // tokens generated since the last event
  // Empty while the sequence runs; "stop" or "length" when it ended normally; "abort" with
  // `error` set when the server ended it (shutdown deadline, engine failure).
  std::string finish_reason;
  absl::Status error;
};

class RequestChannel {
 public:
  void Push(SequenceEvent event);
  // Every event pushed since the last call, waiting up to `timeout` for the first.
  std::vector<SequenceEvent> Wait(std::chrono::milliseconds timeout);

  void Cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<SequenceEvent> events_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace kvcc::serving
