// `kvcc chat <model>`: an interactive multi-turn conversation over a terminal or piped stdin,
// one user message per line. The session's KV cache persists across turns: each turn renders
// the whole conversation with the chat template (the model's own Jinja template unless
// --chat-template names one), keeps the longest prefix the cache already
// holds and prefills only the rest. Prints tokens/s after each reply (stderr).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/stream_decoder.h"
#include "runtime/generator.h"
#include "tools/cli_support.h"
#include "tools/command.h"
#include "tools/text_model.h"

ABSL_FLAG(std::string, system, "", "chat: system prompt");

namespace kvcc::tools {
namespace {

int RunChat(const std::vector<std::string>& args) {
  if (args.size() != 1) {
    std::fprintf(stderr,
                 "usage: kvcc chat <model> [--chat-template llama2|chatml|internlm2|internlm] "
                 "[--system TEXT] [--max-new-tokens N] [sampling flags] [--device cpu]\n");
    return 2;
  }
  auto sampling = SamplingFromFlags(args[0]);
  if (!sampling.ok()) return Fail("chat", sampling.status());
  auto sampler = runtime::Sampler::Create(*sampling);
  if (!sampler.ok()) return Fail("chat", sampler.status());
  const int max_new = absl::GetFlag(FLAGS_max_new_tokens);
  if (max_new <= 0) {
    return Fail("chat", absl::InvalidArgumentError(
                            absl::StrCat("--max-new-tokens ", max_new, " must be positive")));
  }
  auto model = OpenTextModel(args[0], 1);
  if (!model.ok()) return Fail("chat", model.status());
  auto chat = tokenizer::ResolveChatTemplate(*model->tokenizer, absl::GetFlag(FLAGS_chat_template));
  if (!chat.ok()) return Fail("chat", chat.status());
  const tokenizer::Tokenizer& tok = *model->tokenizer->tokenizer;
  runtime::Engine& engine = *model->engine;
  auto session = engine.CreateSession();
  if (!session.ok()) return Fail("chat", session.status());

  const bool interactive = isatty(STDIN_FILENO);
  std::vector<tokenizer::ChatMessage> messages;
  if (!absl::GetFlag(FLAGS_system).empty()) {
    messages.push_back({"system", absl::GetFlag(FLAGS_system)});
  }
  std::vector<int32_t> cached;  // the tokens the session's cache holds, in order
  std::vector<int32_t> history;
  runtime::GenerateOptions options;
  options.max_new_tokens = max_new;
  options.stop_tokens = model->stop_tokens;
  std::string line;
  while (true) {
    if (interactive) {
      std::fputs("> ", stdout);
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    messages.push_back({"user", line});
    auto text = chat->Render(messages, /*add_generation_prompt=*/true);
    if (!text.ok()) return Fail("chat", text.status());
    tokenizer::EncodeOptions encode;
    encode.add_special_tokens = false;  // the template writes BOS where it belongs
    encode.parse_special = true;
    auto ids = tok.Encode(*text, encode);
    if (!ids.ok()) return Fail("chat", ids.status());
    if (static_cast<int64_t>(ids->size()) >= engine.max_context()) {
      std::fprintf(stderr,
                   "kvcc chat: the conversation is %zu tokens, beyond the context of %lld; "
                   "message dropped\n",
                   ids->size(), static_cast<long long>(engine.max_context()));
      messages.pop_back();
      continue;
    }
    // Reuse the cached prefix; recompute from the first token that differs.
    size_t keep = 0;
    while (keep < cached.size() && keep + 1 < ids->size() && cached[keep] == (*ids)[keep]) ++keep;
    if (auto s = engine.TruncateSession(*session, static_cast<int64_t>(keep)); !s.ok()) {
      return Fail("chat", s);
    }
    cached.resize(keep);
    std::vector<int32_t> fresh(ids->begin() + keep, ids->end());
    history = *ids;
    history.resize(keep);
    tokenizer::StreamDecoder stream(&tok, /*skip_special_tokens=*/true);
    auto result = runtime::Generate(engine, *session, fresh, *sampler, options, &history,
                                    PrintToStdout(stream));
    if (!result.ok()) return Fail("chat", result.status());
    std::fputs(stream.Finish().c_str(), stdout);
    std::fputs("\n", stdout);
    std::fflush(stdout);
    cached.insert(cached.end(), fresh.begin(), fresh.end());
    // Generate fed every token but the last into the cache.
    if (!result->tokens.empty()) {
      cached.insert(cached.end(), result->tokens.begin(), result->tokens.end() - 1);
    }
    auto reply = tok.Decode(result->tokens, /*skip_special_tokens=*/true);
    if (!reply.ok()) return Fail("chat", reply.status());
    messages.push_back({"assistant", *reply});
    std::fprintf(stderr, "[%zu new prompt tokens (%zu reused from the cache) at %.1f tok/s; "
                         "%zu reply tokens at %.1f tok/s%s]\n",
                 fresh.size(), keep, fresh.size() / std::max(1e-9, result->prefill_seconds),
                 result->tokens.size(),
                 result->decode_steps / std::max(1e-9, result->decode_seconds),
                 result->context_full ? "; context full" : "");
    if (result->context_full) {
      std::fprintf(stderr, "kvcc chat: the context is full; ending the conversation\n");
      break;
    }
  }
  return 0;
}

}  // namespace
}  // namespace kvcc::tools

KVCC_COMMAND(chat, "chat <model> [--chat-template NAME] [--system TEXT] [sampling flags]",
             kvcc::tools::RunChat);
