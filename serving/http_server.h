// The HTTP face of `kvcc serve` (cpp-httplib): the OpenAI routes (/v1/models, /v1/completions,
// /v1/chat/completions, with server-sent-event streaming), /health and /metrics, API keys, body
// limits and OpenAI error JSON. Handler threads tokenize and hand requests to the Scheduler,
// then relay its events to their client; nothing from a request reaches the filesystem.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "serving/metrics.h"
#include "serving/openai_protocol.h"
#include "serving/scheduler.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace httplib {
class Server;
class Request;
class Response;
}  // namespace httplib

namespace kvcc::serving {

// The prompt text of a conversation in the model's chat template (the caller binds the template;
// an error when the model has none).
using ChatRenderer = std::function<absl::StatusOr<std::string>(
    const std::vector<tokenizer::ChatMessage>& messages)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 23333;  // 0: any free port
  std::vector<std::string> api_keys;  // empty: no key needed
  std::string model_name;
  size_t max_body_bytes = size_t{1} << 22;
  int threads = 64;  // HTTP handler threads (a streaming client holds one)
  ProtocolLimits limits;
};

class HttpServer {
 public:
  // `scheduler`, `tokenizer` and `metrics` must outlive the server.
  HttpServer(Scheduler& scheduler, const tokenizer::Tokenizer& tokenizer, ChatRenderer chat,
             Metrics& metrics, ServerOptions options);
  ~HttpServer();

  // Binds the listening socket; returns the port (the chosen one for port 0).
  absl::StatusOr<int> Bind();
  // Serves until Stop; false when the server failed.
  bool Listen();
  // Thread-safe: /health answers 503 and new generation requests are refused from now on.
  void SetDraining() { draining_.store(true); }
  // Generation requests still being answered (streams included).
  int64_t active() const { return active_.load(); }
  // Thread-safe: closes the socket and ends Listen once open connections finish.
  void Stop();

 private:
  void Routes();
  void Generate(const httplib::Request& req, httplib::Response& res, Endpoint endpoint);
  absl::StatusOr<std::vector<int32_t>> PromptTokens(const OpenAiRequest& r) const;

  Scheduler& scheduler_;
  const tokenizer::Tokenizer& tokenizer_;
  ChatRenderer chat_;
  Metrics& metrics_;
  ServerOptions options_;
  int64_t created_;
  std::atomic<bool> draining_{false};
  std::atomic<uint64_t> next_id_{1};
  std::atomic<int64_t> active_{0};
  std::unique_ptr<httplib::Server> server_;
};

}  // namespace kvcc::serving
