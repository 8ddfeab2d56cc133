// serving::HttpServer's listening socket: a burst of clients connecting before the server
// accepts any must all complete their handshake. httplib listens with a backlog of 5, and
// clients past it had their handshakes dropped, their requests delayed and then their
// connections closed unanswered (failed requests under `kvcc bench serve`). The rest of the
// server is exercised through the real openai client in serve_e2e_test.
#include "serving/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "gtest/gtest.h"
#include "pipeline/model_opener.h"
#include "serving/scheduler.h"
#include "tests/test_util.h"

namespace kvcc::serving {
namespace {

// Starts a non-blocking connect to 127.0.0.1:port; returns the socket.
int StartConnect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  return fd;
}

// Whether the handshake completed within `ms`.
bool Connected(int fd, int ms) {
  pollfd p{fd, POLLOUT, 0};
  if (poll(&p, 1, ms) != 1) return false;
  int err = 0;
  socklen_t len = sizeof(err);
  return getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
}

TEST(HttpServerTest, ABurstOfConnectionsCompletesBeforeAnyIsAccepted) {
  pipeline::OpenOptions o;
  o.model_path = kvcc::testing::SourcePath("models/stories260K");
  o.engine.threads = 1;
  KVCC_ASSERT_OK_AND_ASSIGN(model, pipeline::OpenModel(o));
  Metrics metrics;
  Scheduler scheduler(*model.engine, *model.tokenizer->tokenizer, model.stop_tokens, {},
                      &metrics);
  ServerOptions options;
  options.port = 0;
  options.model_name = "m";
  HttpServer server(scheduler, *model.tokenizer->tokenizer, nullptr, metrics, options);
  KVCC_ASSERT_OK_AND_ASSIGN(port, server.Bind());
  // Not listening yet: every connection waits in the kernel's accept queue.
  constexpr int kClients = 64;
  std::vector<int> fds;
  for (int i = 0; i < kClients; ++i) fds.push_back(StartConnect(port));
  int connected = 0;
  for (int fd : fds) connected += Connected(fd, 300);
  for (int fd : fds) close(fd);
  EXPECT_EQ(connected, kClients);
}

}  // namespace
}  // namespace kvcc::serving
