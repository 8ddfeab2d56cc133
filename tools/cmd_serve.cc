// `kvcc serve <model>`: an OpenAI-compatible HTTP server (serving/) over one engine with
// continuous batching. Binds 127.0.0.1 by default; prints the address it listens on; on
// SIGTERM or SIGINT stops admission, lets running requests finish until --shutdown-timeout,
// aborts the rest and exits 0.
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "serving/http_server.h"
#include "serving/metrics.h"
#include "serving/scheduler.h"
#include "tokenizer/chat_template.h"
#include "tools/cli_support.h"
#include "tools/command.h"
#include "tools/text_model.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "serve: address to listen on");
ABSL_FLAG(int32_t, port, 23333, "serve: port (0: any free port, printed at start)");
ABSL_FLAG(std::string, api_keys, "", "serve: comma-separated API keys (empty: none needed)");
ABSL_FLAG(int32_t, max_batch, 64, "serve: sequences decoded together at most");
ABSL_FLAG(int32_t, max_queue, 256, "serve: requests waiting for admission at most (then 429)");
ABSL_FLAG(int64_t, session_len, 0, "serve: context per request (0: --max-len)");
ABSL_FLAG(int64_t, cache_tokens, 0,
          "serve: KV-cache pool in tokens (0: --max-batch full sessions on the CPU, "
          "--cache-max-entry-count of the GPU)");
ABSL_FLAG(int64_t, prefill_chunk, 256, "serve: prompt tokens prefilled between decode steps");
ABSL_FLAG(std::string, model_name, "", "serve: the model's name in the API (default: the path)");
ABSL_FLAG(int64_t, max_body_bytes, 4 << 20, "serve: largest request body (then 413)");
ABSL_FLAG(int32_t, http_threads, 0, "serve: HTTP threads (0: max-batch + max-queue + 32)");
ABSL_FLAG(double, shutdown_timeout, 10.0,
          "serve: seconds running requests get to finish after SIGTERM");

ABSL_DECLARE_FLAG(int32_t, cpu_threads);

namespace kvcc::tools {
namespace {

int RunServe(const std::vector<std::string>& args) {
  if (args.size() != 1) {
    std::fprintf(stderr,
                 "usage: kvcc serve <model> [--host H] [--port P] [--api-keys K1,K2] "
                 "[--max-batch N] [--max-queue N] [--session-len L] [--device cpu|cuda]\n");
    return 2;
  }
  // Signals are taken by sigwait on this thread only; every thread started below inherits
  // the mask. A vanished client must not kill the server through SIGPIPE.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const int max_batch = absl::GetFlag(FLAGS_max_batch);
  const int max_queue = absl::GetFlag(FLAGS_max_queue);
  if (max_batch <= 0 || max_queue < 0) {
    return Fail("serve", absl::InvalidArgumentError(absl::StrCat(
                             "--max-batch ", max_batch, " must be positive and --max-queue ",
                             max_queue, " not negative")));
  }
  pipeline::OpenOptions open;
  open.model_path = args[0];
  open.lower = LowerOptionsFromFlags();
  open.engine.device = DeviceFromFlags();
  const int64_t session_len = absl::GetFlag(FLAGS_session_len);
  open.engine.max_len = session_len > 0 ? session_len : absl::GetFlag(FLAGS_max_len);
  open.engine.sessions = max_batch;
  open.engine.threads = absl::GetFlag(FLAGS_cpu_threads);
  open.engine.cache_max_entry_count = absl::GetFlag(FLAGS_cache_max_entry_count);
  open.engine.cache_tokens = absl::GetFlag(FLAGS_cache_tokens);
  auto model = pipeline::OpenModel(open);
  if (!model.ok()) return Fail("serve", model.status());
  const tokenizer::LoadedTokenizer& loaded = *model->tokenizer;

  serving::ChatRenderer render;
  auto chat = tokenizer::ResolveChatTemplate(loaded, absl::GetFlag(FLAGS_chat_template));
  if (chat.ok()) {
    render = [format = *chat](const std::vector<tokenizer::ChatMessage>& messages) {
      return format.Render(messages, /*add_generation_prompt=*/true);
    };
  } else {
    std::fprintf(stderr, "kvcc serve: no chat template, /v1/chat/completions is off: %s\n",
                 std::string(chat.status().message()).c_str());
    const std::string why(chat.status().message());
    render = [why](const std::vector<tokenizer::ChatMessage>&) -> absl::StatusOr<std::string> {
      return absl::InvalidArgumentError(
          absl::StrCat("this server has no chat template (", why, ")"));
    };
  }

  serving::Metrics metrics;
  serving::SchedulerOptions sched;
  sched.max_batch = max_batch;
  sched.max_queue = max_queue;
  sched.prefill_chunk = absl::GetFlag(FLAGS_prefill_chunk);
  serving::Scheduler scheduler(*model->engine, *loaded.tokenizer, model->stop_tokens, sched,
                               &metrics);

  serving::ServerOptions options;
  options.host = absl::GetFlag(FLAGS_host);
  options.port = absl::GetFlag(FLAGS_port);
  for (absl::string_view key : absl::StrSplit(absl::GetFlag(FLAGS_api_keys), ',',
                                              absl::SkipWhitespace())) {
    options.api_keys.emplace_back(key);
  }
  options.model_name = absl::GetFlag(FLAGS_model_name).empty() ? args[0]
                                                               : absl::GetFlag(FLAGS_model_name);
  options.max_body_bytes = static_cast<size_t>(std::max<int64_t>(1, absl::GetFlag(FLAGS_max_body_bytes)));
  const int threads = absl::GetFlag(FLAGS_http_threads);
  options.threads = threads > 0 ? threads : max_batch + max_queue + 32;
  serving::HttpServer server(scheduler, *loaded.tokenizer, render, metrics, options);
  auto port = server.Bind();
  if (!port.ok()) return Fail("serve", port.status());
  std::printf("kvcc serve: listening on http://%s:%d (model '%s', context %lld, %lld KV blocks)\n",
              options.host.c_str(), *port, options.model_name.c_str(),
              static_cast<long long>(scheduler.max_context()),
              static_cast<long long>(scheduler.num_blocks()));
  std::fflush(stdout);

  std::thread http([&] { server.Listen(); });
  std::thread engine_thread([&] { scheduler.Run(); });  // the engine's only user from now on
  int sig = 0;
  sigwait(&stop_signals, &sig);
  const double timeout = absl::GetFlag(FLAGS_shutdown_timeout);
  std::fprintf(stderr, "kvcc serve: signal %d; finishing running requests (at most %.1f s)\n",
               sig, timeout);
  server.SetDraining();
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::microseconds(static_cast<int64_t>(timeout * 1e6));
  scheduler.Shutdown(deadline);
  engine_thread.join();
  // The last events still have to reach their clients.
  const auto flush_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (server.active() > 0 && std::chrono::steady_clock::now() < flush_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  server.Stop();
  http.join();
  std::fprintf(stderr, "kvcc serve: stopped\n");
  return 0;
}

}  // namespace
}  // namespace kvcc::tools

KVCC_COMMAND(serve, "serve <model> [--port P] [--api-keys K] [--max-batch N] [serving flags]",
             kvcc::tools::RunServe);
