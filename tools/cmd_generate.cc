// `kvcc generate <model> --prompt TEXT`: encodes the prompt (with BOS), generates up to
// --max-new-tokens tokens with the sampling flags and streams the text to stdout as it becomes
// final; speed goes to stderr.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "ir/atomic_file.h"
#include "ir/startup_marks.h"
#include "tokenizer/stream_decoder.h"
#include "runtime/generator.h"
#include "tools/cli_support.h"
#include "tools/command.h"
#include "tools/text_model.h"

// Hidden (for backend comparisons): the logits every generated token was sampled from.
ABSL_FLAG(std::string, dump_logits, "",
          "generate: write float32 [steps][vocab] logits of each sampling step to this file");

namespace kvcc::tools {
namespace {

int RunGenerate(const std::vector<std::string>& args) {
  if (args.size() != 1) {
    std::fprintf(stderr,
                 "usage: kvcc generate <model> --prompt TEXT [--max-new-tokens N] "
                 "[--temperature T] [--top-k K] [--top-p P] [--repetition-penalty R] [--seed N] "
                 "[--device cpu] [--max-len N] [--quant-policy 0|4] [--kv-quant NAME]\n");
    return 2;
  }
  const std::string prompt = absl::GetFlag(FLAGS_prompt);
  if (prompt.empty()) return Fail("generate", absl::InvalidArgumentError("--prompt is empty"));
  const int max_new = absl::GetFlag(FLAGS_max_new_tokens);
  if (max_new < 0) {
    return Fail("generate", absl::InvalidArgumentError(
        absl::StrCat("--max-new-tokens ", max_new, " is negative")));
  }
  auto sampling = SamplingFromFlags(args[0]);
  if (!sampling.ok()) return Fail("generate", sampling.status());
  auto sampler = runtime::Sampler::Create(*sampling);
  if (!sampler.ok()) return Fail("generate", sampler.status());
  auto model = OpenTextModel(args[0], 1);
  if (!model.ok()) return Fail("generate", model.status());
  ir::StartupMark("model_ready");
  const tokenizer::Tokenizer& tok = *model->tokenizer->tokenizer;
  auto ids = tok.Encode(prompt);
  if (!ids.ok()) return Fail("generate", ids.status());
  runtime::Engine& engine = *model->engine;
  if (static_cast<int64_t>(ids->size()) > engine.max_context()) {
    return Fail("generate", absl::OutOfRangeError(absl::StrCat(
        "the prompt is ", ids->size(), " tokens, longer than the context of ",
        engine.max_context(), " (the model's, or --max-len)")));
  }
  auto session = engine.CreateSession();
  if (!session.ok()) return Fail("generate", session.status());
  tokenizer::StreamDecoder stream(&tok, /*skip_special_tokens=*/true);
  runtime::GenerateOptions options;
  options.max_new_tokens = max_new;
  options.stop_tokens = model->stop_tokens;
  std::vector<int32_t> history;
  std::string dumped;
  const std::string dump_path = absl::GetFlag(FLAGS_dump_logits);
  if (!dump_path.empty()) {
    options.on_logits = [&dumped](const float* logits, int64_t vocab) {
      dumped.append(reinterpret_cast<const char*>(logits), vocab * sizeof(float));
    };
  }
  // The prompt is echoed as the model sees it (decoded from its ids), and the continuation
  // streams on from the same decoder so spacing across the boundary is exact.
  for (int32_t id : *ids) {
    auto text = stream.Put(id);
    if (!text.ok()) return Fail("generate", text.status());
    std::fputs(text->c_str(), stdout);
  }
  std::fflush(stdout);
  auto result = runtime::Generate(engine, *session, *ids, *sampler, options, &history,
                                  PrintToStdout(stream));
  if (!result.ok()) return Fail("generate", result.status());
  ir::StartupMark("generated", absl::StrCat("tokens=", result->tokens.size()));
  std::fputs(stream.Finish().c_str(), stdout);
  std::fputs("\n", stdout);
  std::fflush(stdout);
  if (!dump_path.empty()) {
    if (auto s = ir::WriteFileAtomically(dump_path, dumped); !s.ok()) return Fail("generate", s);
  }
  std::fprintf(stderr,
               "[%zu prompt tokens in %.3f s (%.1f tok/s); %zu new tokens in %.3f s (%.1f tok/s)%s on %s]\n",
               ids->size(), result->prefill_seconds, ids->size() / std::max(1e-9, result->prefill_seconds),
               result->tokens.size(), result->decode_seconds,
               result->decode_steps / std::max(1e-9, result->decode_seconds),
               result->stopped ? ", stopped at EOS" : result->context_full ? ", context full" : "",
               engine.backend().name().c_str());
  return 0;
}

}  // namespace
}  // namespace kvcc::tools

KVCC_COMMAND(generate, "generate <model> --prompt TEXT [--max-new-tokens N] [sampling flags]",
             kvcc::tools::RunGenerate);
