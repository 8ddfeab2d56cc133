#include "serving/http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ir/status_macros.h"

namespace kvcc::serving {
namespace {

constexpr const char* kJson = "application/json";

void SendError(httplib::Response& res, int status, absl::string_view message) {
  res.status = status;
  res.set_content(ErrorJson(status, message), kJson);
}

// Token texts for logprobs; a token that is part of a character shows the replacement text.
std::vector<LogprobEntry> Entries(const tokenizer::Tokenizer& tok,
                                  const std::vector<TokenLogprob>& logprobs) {
  // Decoded as a continuation, so a word-initial token keeps its space.
  auto text = [&](int32_t id) -> std::string {
    if (id < 0 || id >= tok.vocab_size()) return "";  // padding rows of the model's vocabulary
    bool final = false;
    return tok.DecodeSegment(absl::MakeConstSpan(&id, 1), /*at_start=*/false,
                             /*skip_special_tokens=*/false, &final);
  };
  std::vector<LogprobEntry> out;
  for (const TokenLogprob& lp : logprobs) {
    LogprobEntry e;
    e.token = text(lp.token);
    e.logprob = lp.logprob;
    for (const auto& [id, l] : lp.top) e.top.push_back({text(id), l});
    out.push_back(std::move(e));
  }
  return out;
}

// What a streaming response has sent so far.
struct StreamState {
  std::shared_ptr<RequestChannel> channel;
  Endpoint endpoint;
  ResponseHeader header;
  int n = 1;
  bool include_usage = false;
  bool logprobs = false;
  Usage usage;
  std::vector<bool> started;
  int finished = 0;
  bool done = false;
};

}  // namespace

HttpServer::HttpServer(Scheduler& scheduler, const tokenizer::Tokenizer& tokenizer,
                       ChatRenderer chat, Metrics& metrics, ServerOptions options)
    : scheduler_(scheduler),
      tokenizer_(tokenizer),
      chat_(std::move(chat)),
      metrics_(metrics),
      options_(std::move(options)),
      created_(static_cast<int64_t>(std::time(nullptr))),
      server_(std::make_unique<httplib::Server>()) {
  Routes();
}

HttpServer::~HttpServer() = default;

absl::StatusOr<int> HttpServer::Bind() {
  // httplib listens with a backlog of 5: a burst of clients overflows it, and a connection whose
  // request is delayed by the dropped handshake is closed unanswered when httplib's keep-alive
  // wait for its first bytes runs out (seen as failed requests under `kvcc bench serve`). The
  // listening socket is remembered here and given a real backlog once bound.
  int listen_fd = -1;
  server_->set_socket_options([&listen_fd](socket_t sock) {
    httplib::default_socket_options(sock);
    listen_fd = sock;
  });
  int port = options_.port;
  if (port == 0) {
    port = server_->bind_to_any_port(options_.host);
    if (port <= 0) {
      return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.host));
    }
  } else if (!server_->bind_to_port(options_.host, port)) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.host, ":", port,
                                               " (in use, or not an address here)"));
  }
  if (listen_fd < 0 || ::listen(listen_fd, SOMAXCONN) != 0) {
    return absl::InternalError(absl::StrCat("cannot raise the listen backlog on ", options_.host,
                                            ":", port));
  }
  return port;
}

bool HttpServer::Listen() { return server_->listen_after_bind(); }

void HttpServer::Stop() { server_->stop(); }

void HttpServer::Routes() {
  httplib::Server& s = *server_;
  const int threads = std::max(4, options_.threads);
  s.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.set_payload_max_length(options_.max_body_bytes);
  // An idle keep-alive connection holds a handler thread, and shutdown waits for it.
  s.set_keep_alive_timeout(2);
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (options_.api_keys.empty() || req.path == "/health") {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    const std::string auth = req.get_header_value("Authorization");
    for (const std::string& key : options_.api_keys) {
      if (auth == "Bearer " + key) return httplib::Server::HandlerResponse::Unhandled;
    }
    metrics_.CountRejected(401);
    SendError(res, 401,
              auth.empty() ? "an API key is required (Authorization: Bearer KEY)"
                           : "the API key is not valid");
    return httplib::Server::HandlerResponse::Handled;
  });
  // Statuses httplib sets itself (404 unknown route, 413 body too large, 400 bad HTTP) get an
  // OpenAI error body too.
  s.set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string message = res.status == 404 ? absl::StrCat("no route ", req.method, " ", req.path)
                          : res.status == 413
                              ? absl::StrCat("the request body exceeds the limit of ",
                                             options_.max_body_bytes, " bytes")
                              : absl::StrCat("HTTP status ", res.status);
    if (res.status == 413) metrics_.CountRejected(413);
    res.set_content(ErrorJson(res.status, message), kJson);
    return httplib::Server::HandlerResponse::Handled;
  }));
  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (draining_.load()) {
      res.status = 503;
      res.set_content("draining\n", "text/plain");
    } else {
      res.set_content("ok\n", "text/plain");
    }
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.Prometheus(), "text/plain; version=0.0.4");
  });
  s.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(DumpJson(ModelsJson(options_.model_name, created_)), kJson);
  });
  s.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    Generate(req, res, Endpoint::kCompletions);
  });
  s.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    Generate(req, res, Endpoint::kChat);
  });
}

absl::StatusOr<std::vector<int32_t>> HttpServer::PromptTokens(const OpenAiRequest& r) const {
  if (r.endpoint == Endpoint::kChat) {
    KVCC_ASSIGN_OR_RETURN(std::string text, chat_(r.messages));
    tokenizer::EncodeOptions encode;
    encode.add_special_tokens = false;  // the template writes BOS where it belongs
    encode.parse_special = true;
    return tokenizer_.Encode(text, encode);
  }
  if (r.prompt_is_ids) return r.prompt_ids;
  return tokenizer_.Encode(r.prompt);
}

void HttpServer::Generate(const httplib::Request& req, httplib::Response& res,
                          Endpoint endpoint) {
  auto fail = [&](int status, absl::string_view message) {
    metrics_.CountRejected(status);
    SendError(res, status, message);
  };
  if (draining_.load()) return fail(503, "the server is shutting down");
  // Counted until the answer is complete; a stream's count passes to its releaser.
  ++active_;
  std::shared_ptr<void> active_guard(nullptr, [this](void*) { --active_; });
  auto parsed = ParseOpenAiRequest(req.body, endpoint, options_.limits);
  if (!parsed.ok()) return fail(400, parsed.status().message());
  const OpenAiRequest& r = *parsed;
  if (r.model != options_.model_name) {
    return fail(404, absl::StrCat("the model '", r.model, "' does not exist; this server serves '",
                                  options_.model_name, "'"));
  }
  auto prompt = PromptTokens(r);
  if (!prompt.ok()) return fail(HttpStatusFor(prompt.status()), prompt.status().message());
  const int64_t context = scheduler_.max_context();
  const int64_t prompt_len = static_cast<int64_t>(prompt->size());
  if (prompt_len >= context) {
    return fail(400, absl::StrCat("the prompt is ", prompt_len,
                                  " tokens; this model's context is ", context,
                                  " tokens, which leaves no room to generate"));
  }
  GenerationRequest g;
  g.prompt = *std::move(prompt);
  g.n = r.n;
  g.max_tokens = r.max_tokens.has_value() ? *r.max_tokens : static_cast<int>(context - prompt_len);
  g.sampling = r.sampling;
  if (!r.seed_given) g.sampling.seed = (uint64_t{std::random_device()()} << 32) | std::random_device()();
  g.stop = r.stop;
  g.ignore_eos = r.ignore_eos;
  g.top_logprobs = r.top_logprobs;
  auto channel = scheduler_.Submit(std::move(g));
  if (!channel.ok()) return fail(HttpStatusFor(channel.status()), channel.status().message());

  ResponseHeader header;
  header.id = absl::StrFormat("%s-%x%06x", endpoint == Endpoint::kChat ? "chatcmpl" : "cmpl",
                              created_, next_id_.fetch_add(1));
  header.created = static_cast<int64_t>(std::time(nullptr));
  header.model = options_.model_name;
  const bool logprobs = r.top_logprobs >= 0;

  if (r.stream) {
    auto st = std::make_shared<StreamState>();
    st->channel = *channel;
    st->endpoint = endpoint;
    st->header = header;
    st->n = r.n;
    st->include_usage = r.include_usage;
    st->logprobs = logprobs;
    st->usage.prompt_tokens = prompt_len;
    st->started.assign(r.n, false);
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, st](size_t, httplib::DataSink& sink) {
          if (st->done) {
            sink.done();
            return true;
          }
          std::vector<SequenceEvent> events = st->channel->Wait(std::chrono::milliseconds(200));
          // An SSE comment while nothing is new: writing is how a vanished client is noticed.
          std::string out = events.empty() ? ": keep-alive\n\n" : "";
          for (SequenceEvent& e : events) {
            st->usage.completion_tokens += e.tokens;
            if (!e.finish_reason.empty()) ++st->finished;
            if (!e.error.ok()) {
              absl::StrAppend(&out, "data: ", ErrorJson(HttpStatusFor(e.error), e.error.message()),
                              "\n\n");
              continue;
            }
            const bool first = !st->started[e.index];
            if (e.text.empty() && e.finish_reason.empty() && e.logprobs.empty() && !first) {
              continue;
            }
            st->started[e.index] = true;
            ChoiceOutput c;
            c.index = e.index;
            c.text = std::move(e.text);
            c.has_logprobs = st->logprobs;
            c.logprobs = Entries(tokenizer_, e.logprobs);
            c.finish_reason = e.finish_reason;
            absl::StrAppend(&out, "data: ",
                            DumpJson(ChunkJson(st->endpoint, st->header, {c}, first, std::nullopt)),
                            "\n\n");
          }
          if (st->finished == st->n) {
            if (st->include_usage) {
              absl::StrAppend(&out, "data: ",
                              DumpJson(ChunkJson(st->endpoint, st->header, {}, false, st->usage)),
                              "\n\n");
            }
            out += "data: [DONE]\n\n";
            st->done = true;
          }
          // An empty write would end the chunked body.
          if (out.empty()) return true;
          if (!sink.write(out.data(), out.size())) {
            st->channel->Cancel();
            return false;
          }
          if (st->done) sink.done();
          return true;
        },
        // However the response ended, the request stops running (a no-op once it finished).
        [st, active_guard](bool) { st->channel->Cancel(); });
    return;
  }

  std::vector<ChoiceOutput> choices(r.n);
  for (int i = 0; i < r.n; ++i) {
    choices[i].index = i;
    choices[i].has_logprobs = logprobs;
  }
  Usage usage;
  usage.prompt_tokens = prompt_len;
  absl::Status error;
  for (int finished = 0; finished < r.n;) {
    for (SequenceEvent& e : (*channel)->Wait(std::chrono::milliseconds(1000))) {
      ChoiceOutput& c = choices[e.index];
      c.text += e.text;
      std::vector<LogprobEntry> entries = Entries(tokenizer_, e.logprobs);
      c.logprobs.insert(c.logprobs.end(), entries.begin(), entries.end());
      usage.completion_tokens += e.tokens;
      if (!e.finish_reason.empty()) {
        c.finish_reason = e.finish_reason;
        ++finished;
      }
      if (!e.error.ok() && error.ok()) error = e.error;
    }
  }
  if (!error.ok()) return SendError(res, HttpStatusFor(error), error.message());
  res.set_content(DumpJson(ResponseJson(endpoint, header, choices, usage)), kJson);
}

}  // namespace kvcc::serving
