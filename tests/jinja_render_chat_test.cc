// `kvcc render-chat`: the prompt printed byte for byte (no newline added) from the model's
// chat_template.jinja, with and without --add-generation-prompt, --chat-template overriding it,
// and errors (a template that raises, a bad messages file) reported with a non-zero exit.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "tokenizer/tokenizer_loader.h"

namespace kvcc::tokenizer {
namespace {

using kvcc::testing::ReadFileBytes;
using kvcc::testing::SharedPath;
using kvcc::testing::SourcePath;

struct Result {
  int code;
  std::string out, err;
};

class RenderChatCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kvcc_ = std::string(KVCC_BINARY_DIR) + "/tools/kvcc";
    if (!std::filesystem::exists(kvcc_)) GTEST_SKIP() << "kvcc binary not built at " << kvcc_;
    dir_ = kvcc::testing::TempDir("render_chat");
    model_ = dir_ + "/model";
    std::filesystem::create_directories(model_);
    std::filesystem::copy_file(SharedPath("models/stories260K/tokenizer.json"), model_ + "/tokenizer.json");
    std::ofstream(model_ + "/tokenizer_config.json") << R"({"bos_token": "<s>", "eos_token": "</s>"})";
    std::filesystem::copy_file(SourcePath("tests/data/chat_templates/llama-3.1-8b-instruct.jinja"),
                               model_ + "/chat_template.jinja");
  }
  Result Kvcc(const std::string& args) {
    const std::string out = dir_ + "/stdout", err = dir_ + "/stderr";
    const int status = std::system((kvcc_ + " " + args + " > " + out + " 2> " + err).c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, ReadFileBytes(out), ReadFileBytes(err)};
  }
  std::string Messages(const std::string& json, const std::string& name = "messages.json") {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << json;
    return path;
  }
  std::string kvcc_, dir_, model_;
};

TEST_F(RenderChatCommandTest, PrintsThePromptExactly) {
  const std::string conversation =
      R"([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi é"}])";
  auto loaded = LoadTokenizer(model_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  auto format = ResolveChatTemplate(*loaded, "");
  ASSERT_TRUE(format.ok()) << format.status();
  const std::vector<ChatMessage> messages = {{"system", "Be brief."}, {"user", "Hi é"}};
  const std::string path = Messages(conversation);
  for (bool gen : {false, true}) {
    Result r = Kvcc("render-chat " + model_ + " --messages " + path + (gen ? " --add-generation-prompt" : ""));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, *format->Render(messages, gen));
    const std::string header = "<|start_header_id|>assistant<|end_header_id|>\n\n";
    EXPECT_EQ(r.out.size() >= header.size() && r.out.compare(r.out.size() - header.size(), header.size(), header) == 0, gen)
        << r.out;
  }
  // {"messages": [...], "tools": [...]} reaches the template's tools branch.
  Result tools = Kvcc("render-chat " + model_ + " --messages " +
                      Messages(R"({"messages": )" + conversation + R"(, "tools": [{"type": "function", "function": {"name": "f"}}]})",
                               "with_tools.json"));
  ASSERT_EQ(tools.code, 0) << tools.err;
  EXPECT_NE(tools.out.find("Environment: ipython"), std::string::npos) << tools.out;
  EXPECT_NE(tools.out.find("\"name\": \"f\""), std::string::npos) << tools.out;
  Result named = Kvcc("render-chat " + model_ + " --chat-template chatml --messages " + path);
  ASSERT_EQ(named.code, 0) << named.err;
  EXPECT_EQ(named.out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi é<|im_end|>\n");
}

TEST_F(RenderChatCommandTest, ReportsErrors) {
  std::filesystem::copy_file(SourcePath("tests/data/chat_templates/gemma-2-it.jinja"), model_ + "/chat_template.jinja",
                             std::filesystem::copy_options::overwrite_existing);
  Result raised = Kvcc("render-chat " + model_ + " --messages " +
                       Messages(R"([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])"));
  EXPECT_NE(raised.code, 0);
  EXPECT_EQ(raised.out, "");
  EXPECT_NE(raised.err.find("System role not supported"), std::string::npos) << raised.err;
  EXPECT_NE(raised.err.find("chat_template.jinja"), std::string::npos) << raised.err;
  Result bad = Kvcc("render-chat " + model_ + " --messages " + Messages("[{\"role\": "));
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("messages.json"), std::string::npos) << bad.err;
  Result shape = Kvcc("render-chat " + model_ + " --messages " + Messages(R"({"turns": []})"));
  EXPECT_NE(shape.code, 0);
  EXPECT_NE(shape.err.find("list of messages"), std::string::npos) << shape.err;
  EXPECT_EQ(Kvcc("render-chat " + model_).code, 2);
}

}  // namespace
}  // namespace kvcc::tokenizer
