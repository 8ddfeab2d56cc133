// `kvcc serve --device cpu` on the embedded model driven by the real `openai` Python client
// (tests/python/serve_e2e.py, through $KVCC_PYTHON): the wire format, streaming, n, stop
// strings, seeds, logprobs, 64 concurrent streams equal to each request alone, disconnects,
// 429 under a flood, every error status and SIGTERM. Skips without KVCC_PYTHON or the binary.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace kvcc {
namespace {

TEST(ServeE2eTest, OpenAiClientAgainstKvccServe) {
  const char* python = std::getenv("KVCC_PYTHON");
  if (python == nullptr || *python == '\0') GTEST_SKIP() << "KVCC_PYTHON is not set";
  const std::string kvcc = std::string(KVCC_BINARY_DIR) + "/tools/kvcc";
  if (!std::filesystem::exists(kvcc)) GTEST_SKIP() << "kvcc binary not built at " << kvcc;
  const std::string log = testing::TempDir("serve_e2e") + "/log.txt";
  const std::string cmd = std::string(python) + " " +
                          testing::SourcePath("tests/python/serve_e2e.py") + " " + kvcc + " " +
                          testing::SourcePath("models/stories260K") + " > " + log + " 2>&1";
  const int status = std::system(cmd.c_str());
  const std::string out = testing::ReadFileBytes(log);
  std::fputs(out.c_str(), stdout);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  EXPECT_NE(out.find("all checks passed"), std::string::npos) << out;
}

}  // namespace
}  // namespace kvcc
