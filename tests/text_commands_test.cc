// `kvcc generate`, `kvcc chat` and `kvcc ppl` as a user runs them (the built binary): the
// embedded model's story, multi-turn chat over piped stdin with cache reuse, perplexity with a
// progress bar, and the clear errors for bad input. Skips when the kvcc binary is not built.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace kvcc {
namespace {

using kvcc::testing::SharedPath;
using kvcc::testing::SourcePath;

struct CommandResult {
  int code;
  std::string out, err;
};

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class TextCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kvcc_ = std::string(KVCC_BINARY_DIR) + "/tools/kvcc";
    if (!std::filesystem::exists(kvcc_)) GTEST_SKIP() << "kvcc binary not built at " << kvcc_;
    dir_ = kvcc::testing::TempDir("cli");
  }
  CommandResult Kvcc(const std::string& args, const std::string& stdin_text = "") {
    const std::string in = dir_ + "/stdin", out = dir_ + "/stdout", err = dir_ + "/stderr";
    std::ofstream(in) << stdin_text;
    const std::string cmd = kvcc_ + " " + args + " --device cpu < " + in + " > " + out +
                            " 2> " + err;
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, Slurp(out), Slurp(err)};
  }
  std::string kvcc_, dir_;
  const std::string model_ = SourcePath("models/stories260K");
};

TEST_F(TextCommandsTest, GenerateWritesTheGreedyStory) {
  CommandResult r = Kvcc("generate " + model_ + " --prompt \"Once upon a time\" --max-new-tokens 64");
  ASSERT_EQ(r.code, 0) << r.err;
  // The reference's greedy continuation from <s> starts with "Once upon a time"; so does
  // greedy decoding of that prompt.
  std::ifstream f(SharedPath("models/stories260K-reference/reference.json"));
  const std::string want = nlohmann::json::parse(f)["greedy_from_bos_text"].get<std::string>();
  EXPECT_EQ(r.out.rfind(want.substr(0, 100), 0), 0u) << r.out;
  EXPECT_NE(r.err.find("tok/s"), std::string::npos) << r.err;
  // The same from the imported artifact (model.onnx + weights + tokenizer files).
  const std::string artifact = dir_ + "/artifact";
  CommandResult imported = Kvcc("import " + model_ + " -o " + artifact);
  ASSERT_EQ(imported.code, 0) << imported.err;
  CommandResult from_artifact =
      Kvcc("generate " + artifact + " --prompt \"Once upon a time\" --max-new-tokens 64");
  ASSERT_EQ(from_artifact.code, 0) << from_artifact.err;
  EXPECT_EQ(from_artifact.out, r.out);
}

TEST_F(TextCommandsTest, GenerateDumpsTheLogitsOfEachStep) {
  const std::string dump = dir_ + "/logits.f32";
  CommandResult r = Kvcc("generate " + model_ + " --prompt \"Once upon a time\" --max-new-tokens 6 " +
                         "--dump-logits " + dump);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string bytes = Slurp(dump);
  ASSERT_EQ(bytes.size(), 6u * 512 * sizeof(float));
  std::vector<float> logits(6 * 512);
  std::memcpy(logits.data(), bytes.data(), bytes.size());
  // Greedy: each row's argmax is the next token of the reference continuation
  // ("Once upon a time" is <s> + 4 tokens of it).
  std::ifstream f(SharedPath("models/stories260K-reference/reference.json"));
  const auto greedy = nlohmann::json::parse(f)["greedy_from_bos_ids"].get<std::vector<int>>();
  for (int step = 0; step < 6; ++step) {
    const float* row = logits.data() + step * 512;
    EXPECT_EQ(std::max_element(row, row + 512) - row, greedy[5 + step]) << "step " << step;
  }
}

TEST_F(TextCommandsTest, GenerateRejectsBadInput) {
  struct Case {
    std::string args, mentions;
  };
  for (const Case& c : std::vector<Case>{
           {"--prompt \"\"", "--prompt is empty"},
           {"--prompt \"Once upon a time there was a dog\" --max-len 4", "longer than the context"},
           {"--prompt hi --top-p 0", "top-p"},
           {"--prompt hi --top-p 1.5", "top-p"},
           {"--prompt hi --temperature -1", "temperature"},
           {"--prompt hi --top-k -3", "top-k"},
           {"--prompt hi --repetition-penalty 0", "repetition penalty"}}) {
    CommandResult r = Kvcc("generate " + model_ + " " + c.args);
    EXPECT_NE(r.code, 0) << c.args;
    EXPECT_NE(r.err.find(c.mentions), std::string::npos) << c.args << ": " << r.err;
  }
  CommandResult missing = Kvcc("generate " + dir_ + "/nothing --prompt hi");
  EXPECT_NE(missing.code, 0);
  EXPECT_NE(missing.err.find("nothing"), std::string::npos) << missing.err;
}

TEST_F(TextCommandsTest, ChatKeepsTheCacheAcrossTurns) {
  CommandResult r = Kvcc("chat " + model_ + " --chat-template llama2 --max-new-tokens 16",
               "Tell me a story.\n\nAnd then?\n");
  ASSERT_EQ(r.code, 0) << r.err;
  // Two replies, each followed by its speed line; the second turn reuses cached tokens.
  size_t first = r.err.find("reply tokens at");
  ASSERT_NE(first, std::string::npos) << r.err;
  size_t second = r.err.find("reply tokens at", first + 1);
  ASSERT_NE(second, std::string::npos) << r.err;
  const size_t reused = r.err.find("reused from the cache", first);
  ASSERT_NE(reused, std::string::npos);
  const size_t open = r.err.rfind('(', reused);
  EXPECT_GT(std::stoi(r.err.substr(open + 1)), 0) << r.err;

  CommandResult no_template = Kvcc("chat " + model_, "hello\n");
  EXPECT_NE(no_template.code, 0);
  EXPECT_NE(no_template.err.find("--chat-template"), std::string::npos) << no_template.err;
}

TEST_F(TextCommandsTest, PplReportsPerplexityAndRejectsShortData) {
  CommandResult r = Kvcc("ppl " + model_ + " --dataset tinystories --seqlen 128 --samples 4");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("ppl ", 0), 0u) << r.out;
  EXPECT_NE(r.err.find("4/4 windows"), std::string::npos) << r.err;

  std::ofstream(dir_ + "/short.txt") << "Once upon a time.";
  CommandResult short_text = Kvcc("ppl " + model_ + " --dataset " + dir_ + "/short.txt --seqlen 64");
  EXPECT_NE(short_text.code, 0);
  EXPECT_NE(short_text.err.find("fewer than one window"), std::string::npos) << short_text.err;
  std::ofstream(dir_ + "/empty.txt") << "";
  CommandResult empty = Kvcc("ppl " + model_ + " --dataset " + dir_ + "/empty.txt --seqlen 64");
  EXPECT_NE(empty.code, 0);
  EXPECT_NE(empty.err.find("empty"), std::string::npos) << empty.err;
  CommandResult too_long = Kvcc("ppl " + model_ + " --dataset tinystories --seqlen 4096");
  EXPECT_NE(too_long.code, 0);
  EXPECT_NE(too_long.err.find("exceeds the context"), std::string::npos) << too_long.err;
}

}  // namespace
}  // namespace kvcc
