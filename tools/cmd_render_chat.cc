// `kvcc render-chat <model> --messages FILE.json [--add-generation-prompt]`: prints the prompt
// the model's chat template (or --chat-template NAME) makes of a conversation, byte for byte
// (no newline added), as transformers' apply_chat_template(..., tokenize=False) returns it.
// FILE.json is a list of messages, or {"messages": [...], "tools": [...]}.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "ir/file_read.h"
#include "ir/json_reader.h"
#include "tokenizer/tokenizer_loader.h"
#include "tools/cli_support.h"
#include "tools/command.h"
#include "tools/flags.h"

ABSL_FLAG(std::string, messages, "", "render-chat: the conversation, a JSON file");
ABSL_FLAG(bool, add_generation_prompt, false, "render-chat: end with the assistant turn's opening");

namespace kvcc::tools {
namespace {

int RunRenderChat(const std::vector<std::string>& args) {
  const std::string path = absl::GetFlag(FLAGS_messages);
  if (args.size() != 1 || path.empty()) {
    std::fprintf(stderr,
                 "usage: kvcc render-chat <model> --messages FILE.json [--add-generation-prompt] "
                 "[--chat-template llama2|chatml|internlm2|internlm]\n");
    return 2;
  }
  auto text = ir::ReadRegularFile(path, int64_t{256} << 20, "messages file");
  if (!text.ok()) return Fail("render-chat", text.status());
  // The bounded reader checks size, depth and syntax; the ordered parse keeps key order,
  // which templates that print dicts (tojson) show.
  if (auto checked = ir::ParseJson(*text, path); !checked.ok()) return Fail("render-chat", checked.status());
  const nlohmann::ordered_json doc = nlohmann::ordered_json::parse(*text, nullptr, /*allow_exceptions=*/false);
  nlohmann::ordered_json messages = doc, tools;
  if (doc.is_object()) {
    messages = doc.contains("messages") ? doc["messages"] : nlohmann::ordered_json();
    if (doc.contains("tools")) tools = doc["tools"];
  }
  if (!messages.is_array()) {
    return Fail("render-chat", absl::InvalidArgumentError(absl::StrCat(
                                   path, ": expected a list of messages or {\"messages\": [...]}")));
  }
  auto loaded = tokenizer::LoadTokenizer(args[0]);
  if (!loaded.ok()) return Fail("render-chat", loaded.status());
  auto format = tokenizer::ResolveChatTemplate(*loaded, absl::GetFlag(FLAGS_chat_template));
  if (!format.ok()) return Fail("render-chat", format.status());
  auto prompt = format->RenderJson(messages, tools, absl::GetFlag(FLAGS_add_generation_prompt));
  if (!prompt.ok()) return Fail("render-chat", prompt.status());
  std::fwrite(prompt->data(), 1, prompt->size(), stdout);
  return std::fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace
}  // namespace kvcc::tools

// Registered by hand rather than with KVCC_COMMAND, whose name argument cannot hold a '-'.
static const bool kvcc_registered_render_chat = ::kvcc::tools::RegisterCommand(
    {"render-chat", "render-chat <model> --messages FILE.json [--add-generation-prompt] [--chat-template NAME]",
     kvcc::tools::RunRenderChat});
