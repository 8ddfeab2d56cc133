#include "serving/scheduler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"

namespace kvcc::serving {
namespace {

double Seconds(Scheduler::Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The model's log-probabilities (log-softmax of the raw logits, before sampling settings, as
// OpenAI and vLLM report them) of `token` and of the `top` most likely tokens.
TokenLogprob Logprobs(const float* logits, int64_t vocab, int32_t token, int top) {
  const float max = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - max);
  const double lse = max + std::log(sum);
  TokenLogprob out;
  out.token = token;
  out.logprob = static_cast<float>(logits[token] - lse);
  std::vector<int32_t> ids(vocab);
  std::iota(ids.begin(), ids.end(), 0);
  const int64_t k = std::min<int64_t>(top, vocab);
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  });
  for (int64_t i = 0; i < k; ++i) {
    out.top.push_back({ids[i], static_cast<float>(logits[ids[i]] - lse)});
  }
  return out;
}

}  // namespace

Scheduler::Scheduler(runtime::Engine& engine, const tokenizer::Tokenizer& tokenizer,
                     std::vector<int32_t> stop_tokens, const SchedulerOptions& options,
                     Metrics* metrics)
    : engine_(engine),
      tokenizer_(tokenizer),
      stop_tokens_(std::move(stop_tokens)),
      options_(options),
      metrics_(metrics),
      max_context_(engine.max_context()),
      num_blocks_(engine.cache().blocks().num_blocks()),
      vocab_(engine.vocab_size()) {
  options_.max_batch = std::max(1, options_.max_batch);
  options_.max_queue = std::max(0, options_.max_queue);
  options_.prefill_chunk = std::max<int64_t>(1, options_.prefill_chunk);
  PublishGauges();
}

int64_t Scheduler::BlocksNeeded(const GenerationRequest& r) const {
  const int64_t tokens =
      std::min<int64_t>(static_cast<int64_t>(r.prompt.size()) + r.max_tokens, max_context_);
  return r.n * engine_.cache().blocks().BlocksFor(tokens);
}

int64_t Scheduler::AdmissionBlocks(const Request& r) const {
  const runtime::BlockPool& pool = engine_.cache().blocks();
  if (r.seqs.empty()) {
    return r.spec.n * pool.BlocksFor(static_cast<int64_t>(r.spec.prompt.size()) + 1);
  }
  int64_t blocks = 0;
  for (const Sequence& s : r.seqs) {
    if (!s.done) blocks += pool.BlocksFor(static_cast<int64_t>(s.pending.size()) + 1);
  }
  return blocks;
}

absl::StatusOr<std::shared_ptr<RequestChannel>> Scheduler::Submit(GenerationRequest request) {
  const int64_t prompt = static_cast<int64_t>(request.prompt.size());
  if (prompt == 0) return absl::InvalidArgumentError("the prompt is empty");
  for (int32_t id : request.prompt) {
    if (id < 0 || id >= vocab_) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt token id ", id, " is outside the vocabulary of ", vocab_));
    }
  }
  if (request.n < 1 || request.max_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("n ", request.n, " and max_tokens ",
                                                   request.max_tokens, " must be positive"));
  }
  if (prompt + request.max_tokens > max_context_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "this model's context is ", max_context_, " tokens; the request asks for ",
        prompt + request.max_tokens, " (", prompt, " in the prompt, ", request.max_tokens,
        " to generate)"));
  }
  if (request.n > options_.max_batch) {
    return absl::InvalidArgumentError(absl::StrCat("n ", request.n, " exceeds the server's ",
                                                   "batch of ", options_.max_batch));
  }
  if (const int64_t need = BlocksNeeded(request); need > num_blocks_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the request needs ", need, " KV-cache blocks; the whole pool has ", num_blocks_));
  }
  KVCC_RETURN_IF_ERROR(runtime::SamplingParams(request.sampling).Validate());
  auto r = std::make_unique<Request>();
  r->spec = std::move(request);
  r->channel = std::make_shared<RequestChannel>();
  r->arrived = Clock::now();
  std::shared_ptr<RequestChannel> channel = r->channel;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutting_down_) return absl::UnavailableError("the server is shutting down");
    if (static_cast<int64_t>(queue_.size()) >= options_.max_queue) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the server's queue is full (", options_.max_queue, " requests waiting); retry later"));
    }
    queue_.push_back(std::move(r));
    if (metrics_ != nullptr) metrics_->SetQueued(static_cast<int64_t>(queue_.size()));
  }
  wake_.notify_all();
  return channel;
}

void Scheduler::Shutdown(Clock::time_point deadline) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutting_down_ = true;
    deadline_ = deadline;
  }
  wake_.notify_all();
}

int64_t Scheduler::running() const {
  std::lock_guard<std::mutex> lock(mu_);
  return running_count_;
}

int64_t Scheduler::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(queue_.size());
}

void Scheduler::Admit() {
  std::vector<std::unique_ptr<Request>> admitted;
  std::vector<std::unique_ptr<Request>> refused;
  {
    std::lock_guard<std::mutex> lock(mu_);
    int64_t free = engine_.cache().blocks().free_blocks();
    while (!queue_.empty()) {
      Request& front = *queue_.front();
      if (front.channel->cancelled() || shutting_down_) {
        refused.push_back(std::move(queue_.front()));
        queue_.pop_front();
        continue;
      }
      // While others run, a little headroom stays free so they can grow without preempting
      // what was just admitted.
      const int64_t need = AdmissionBlocks(front) + (running_count_ > 0 ? num_blocks_ / 100 : 0);
      if (need > free || running_count_ + front.spec.n > options_.max_batch) break;
      free -= need;
      running_count_ += front.spec.n;
      admitted.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
  }
  for (auto& r : refused) {
    if (r->channel->cancelled()) {
      if (metrics_ != nullptr) metrics_->CountFinished("cancelled");
      continue;
    }
    for (int i = 0; i < r->spec.n; ++i) {
      if (!r->seqs.empty() && r->seqs[i].done) continue;  // preempted after this one ended
      SequenceEvent e;
      e.index = i;
      e.finish_reason = "abort";
      e.error = absl::UnavailableError("the server is shutting down");
      r->channel->Push(std::move(e));
    }
  }
  for (auto& r : admitted) {
    Request& req = *r;
    running_.push_back(std::move(r));
    absl::Status status;
    if (req.seqs.empty()) {  // first admission; a preempted request keeps its sequences
      for (int i = 0; i < req.spec.n && status.ok(); ++i) {
        Sequence& s = req.seqs.emplace_back();
        s.index = i;
        runtime::SamplingParams p = req.spec.sampling;
        p.seed += static_cast<uint64_t>(s.index);
        auto sampler = runtime::Sampler::Create(p);
        if (!sampler.ok()) {
          status = sampler.status();
          break;
        }
        s.sampler.emplace(*std::move(sampler));
        s.history = req.spec.prompt;
        s.pending = req.spec.prompt;
        s.decoder = std::make_unique<tokenizer::StreamDecoder>(&tokenizer_,
                                                               /*skip_special_tokens=*/true);
        s.stop = std::make_unique<StopMatcher>(req.spec.stop);
      }
    }
    for (Sequence& s : req.seqs) {
      if (!status.ok()) break;
      if (s.done) continue;
      auto session = engine_.CreateSession();
      status = session.status();
      if (session.ok()) {
        s.session = *session;
        // What admission counted, claimed now so that later admissions see it taken.
        status = engine_.cache().blocks().Reserve(
            s.session, static_cast<int64_t>(s.pending.size()) + 1);
      }
    }
    if (!status.ok()) Abort(req, status);
  }
}

void Scheduler::PreemptLast() {
  std::unique_ptr<Request> r = std::move(running_.back());
  running_.pop_back();
  for (Sequence& s : r->seqs) {
    if (s.done) continue;
    if (s.session >= 0) engine_.CloseSession(s.session).IgnoreError();
    s.session = -1;
    // `next` was sampled but is not in the cache yet: it stays the token to decode.
    if (s.next >= 0) s.pending.assign(s.history.begin(), s.history.end() - 1);
    s.prefilled = 0;
  }
  if (metrics_ != nullptr) metrics_->CountPreempted();
  std::lock_guard<std::mutex> lock(mu_);
  running_count_ -= r->spec.n;
  queue_.push_front(std::move(r));
}

void Scheduler::Finish(Request& r, Sequence& s, const std::string& reason, absl::Status error) {
  SequenceEvent e;
  e.index = s.index;
  e.finish_reason = reason;
  e.error = std::move(error);
  Finish(r, s, std::move(e));
}

void Scheduler::Finish(Request& r, Sequence& s, SequenceEvent e) {
  if (s.done) return;
  if (e.finish_reason != "abort" && s.decoder != nullptr) {
    e.text += s.stop->Put(s.decoder->Finish());
    e.text += s.stop->Finish();
  }
  s.done = true;
  s.reason = e.finish_reason;
  if (s.session >= 0) {
    engine_.CloseSession(s.session).IgnoreError();  // the blocks go back now
    s.session = -1;
  }
  r.channel->Push(std::move(e));
}

void Scheduler::Abort(Request& r, const absl::Status& error) {
  for (Sequence& s : r.seqs) Finish(r, s, "abort", error);
}

void Scheduler::Accept(Request& r, Sequence& s, const absl::StatusOr<int32_t>& token,
                       const float* logits) {
  if (!token.ok()) {
    Finish(r, s, "abort", token.status());
    return;
  }
  const Clock::time_point now = Clock::now();
  if (metrics_ != nullptr) {
    if (!r.first_token) metrics_->ObserveTtft(Seconds(now - r.arrived));
    if (s.generated > 0) metrics_->ObserveItl(Seconds(now - s.last_token));
  }
  r.first_token = true;
  s.last_token = now;
  SequenceEvent e;
  e.index = s.index;
  if (!r.spec.ignore_eos &&
      std::find(stop_tokens_.begin(), stop_tokens_.end(), *token) != stop_tokens_.end()) {
    e.finish_reason = "stop";
    Finish(r, s, std::move(e));
    return;
  }
  if (r.spec.top_logprobs >= 0 && logits != nullptr) {
    e.logprobs.push_back(Logprobs(logits, vocab_, *token, r.spec.top_logprobs));
  }
  ++s.generated;
  e.tokens = 1;
  s.history.push_back(*token);
  if (metrics_ != nullptr) metrics_->AddGenerationTokens(1);
  auto piece = s.decoder->Put(*token);
  if (!piece.ok()) {
    Finish(r, s, "abort", piece.status());
    return;
  }
  e.text = s.stop->Put(*piece);
  if (s.stop->stopped()) {
    e.finish_reason = "stop";
    Finish(r, s, std::move(e));
  } else if (s.generated >= r.spec.max_tokens ||
             engine_.SessionLength(s.session) + 1 > max_context_) {
    e.finish_reason = "length";
    Finish(r, s, std::move(e));
  } else {
    s.next = *token;
    r.channel->Push(std::move(e));
  }
}

void Scheduler::Prefill() {
  int64_t budget = options_.prefill_chunk;
  for (auto& r : running_) {
    for (Sequence& s : r->seqs) {
      const std::vector<int32_t>& prompt = s.pending;
      // Chunk boundaries depend on the request alone, so a prompt is prefilled the same way
      // however busy the server is.
      while (!s.done && budget > 0 && s.prefilled < prompt.size()) {
        const size_t n = std::min<size_t>(options_.prefill_chunk, prompt.size() - s.prefilled);
        std::vector<int32_t> chunk(prompt.begin() + s.prefilled, prompt.begin() + s.prefilled + n);
        // The last chunk's token is picked on the backend unless log-probs need the logits;
        // a recomputed (preempted) sequence already sampled its next token and picks none.
        const bool pick = s.prefilled + n == prompt.size() && s.next < 0;
        absl::StatusOr<int32_t> token = -1;
        std::vector<float> logits;
        absl::Status status;
        if (pick && r->spec.top_logprobs < 0) {
          token = engine_.PrefillSample(s.session, chunk, s.sampler->NextRow(s.history));
          status = token.status();
        } else {
          auto l = engine_.Prefill(s.session, chunk);
          status = l.status();
          if (l.ok()) logits = *std::move(l);
        }
        if (!status.ok()) {
          Abort(*r, status);
          break;
        }
        s.prefilled += n;
        budget -= static_cast<int64_t>(n);
        if (metrics_ != nullptr) metrics_->AddPromptTokens(static_cast<int64_t>(n));
        if (pick && !logits.empty()) {
          Accept(*r, s, s.sampler->Sample(logits.data(), vocab_, s.history), logits.data());
        } else if (pick) {
          Accept(*r, s, token, nullptr);
        }
      }
      if (budget <= 0) return;
    }
  }
}

void Scheduler::Decode() {
  auto decoding = [](const Sequence& s) {
    return !s.done && s.next >= 0 && s.prefilled == s.pending.size();
  };
  // A sequence whose next token starts a block needs one; while the pool cannot give every one,
  // the last admitted request makes room (Submit refused what could not run alone).
  const runtime::BlockPool& pool = engine_.cache().blocks();
  while (running_.size() > 1) {
    int64_t need = 0;
    for (auto& r : running_) {
      for (Sequence& s : r->seqs) {
        if (decoding(s) && engine_.SessionLength(s.session) + 1 > pool.Capacity(s.session)) ++need;
      }
    }
    if (need <= pool.free_blocks()) break;
    PreemptLast();
  }
  std::vector<std::pair<int64_t, int32_t>> batch;
  std::vector<std::pair<Request*, Sequence*>> who;
  for (auto& r : running_) {
    for (Sequence& s : r->seqs) {
      if (!decoding(s)) continue;
      batch.push_back({s.session, s.next});
      who.push_back({r.get(), &s});
    }
  }
  if (batch.empty()) return;
  // The backend picks every token and only the ids come back, unless a request asks for
  // log-probs: then the step's logits come to the host and are sampled there.
  const bool host_logits = std::any_of(who.begin(), who.end(), [](const auto& w) {
    return w.first->spec.top_logprobs >= 0;
  });
  absl::StatusOr<std::vector<std::vector<float>>> logits;
  absl::StatusOr<std::vector<int32_t>> ids;
  if (host_logits) {
    logits = engine_.Decode(batch);
  } else {
    std::vector<runtime::SampleRow> rows;
    for (auto [r, s] : who) rows.push_back(s->sampler->NextRow(s->history));
    ids = engine_.DecodeSample(batch, rows);
  }
  for (size_t i = 0; i < who.size(); ++i) {
    auto [r, s] = who[i];
    s->next = -1;
    if (host_logits && !logits.ok()) {
      Finish(*r, *s, "abort", logits.status());
    } else if (!host_logits && !ids.ok()) {
      Finish(*r, *s, "abort", ids.status());
    } else if (host_logits) {
      const float* l = (*logits)[i].data();
      Accept(*r, *s, s->sampler->Sample(l, vocab_, s->history), l);
    } else {
      Accept(*r, *s, (*ids)[i], nullptr);
    }
  }
}

void Scheduler::DropDone() {
  int64_t ended = 0;
  for (auto it = running_.begin(); it != running_.end();) {
    Request& r = **it;
    const bool done = std::all_of(r.seqs.begin(), r.seqs.end(),
                                  [](const Sequence& s) { return s.done; });
    if (!done) {
      ++it;
      continue;
    }
    if (metrics_ != nullptr) {
      metrics_->ObserveLatency(Seconds(Clock::now() - r.arrived));
      auto any = [&](const char* reason) {
        return std::any_of(r.seqs.begin(), r.seqs.end(),
                           [&](const Sequence& s) { return s.reason == reason; });
      };
      metrics_->CountFinished(any("cancelled") ? "cancelled"
                              : any("abort")   ? "abort"
                                               : "completed");
    }
    ended += r.spec.n;
    it = running_.erase(it);
  }
  if (ended > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    running_count_ -= ended;
  }
}

void Scheduler::PublishGauges() {
  if (metrics_ == nullptr) return;
  GaugeValues g;
  g.running_requests = static_cast<int64_t>(running_.size());
  g.queued_requests = queued();
  g.kv_blocks_free = engine_.cache().blocks().free_blocks();
  g.kv_blocks_used = num_blocks_ - g.kv_blocks_free;
  metrics_->SetGauges(g);
}

bool Scheduler::Step() {
  bool shutting_down;
  Clock::time_point deadline;
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutting_down = shutting_down_;
    deadline = deadline_;
  }
  // A client that went away, or the shutdown deadline: the blocks go back before this step.
  for (auto& r : running_) {
    if (r->channel->cancelled()) {
      for (Sequence& s : r->seqs) {
        if (s.done) continue;
        s.done = true;
        s.reason = "cancelled";
        if (s.session >= 0) engine_.CloseSession(s.session).IgnoreError();
        s.session = -1;
      }
    } else if (shutting_down && Clock::now() >= deadline) {
      Abort(*r, absl::UnavailableError(
                    "the server shut down before this request finished (deadline passed)"));
    }
  }
  DropDone();
  Admit();
  PublishGauges();  // admitted requests show their blocks before their first token
  const bool work = !running_.empty();
  Prefill();
  Decode();
  DropDone();
  PublishGauges();
  return work;
}

void Scheduler::Run() {
  while (true) {
    const bool worked = Step();
    std::unique_lock<std::mutex> lock(mu_);
    if (shutting_down_ && queue_.empty() && running_.empty()) break;
    if (!worked) {
      wake_.wait_for(lock, std::chrono::milliseconds(50),
                     [&] { return !queue_.empty() || shutting_down_; });
    }
  }
  PublishGauges();
}

}  // namespace kvcc::serving
