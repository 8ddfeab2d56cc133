// `kvcc ppl <model> --dataset FILE|ptb|wikitext2|tinystories --seqlen N --samples N`:
// perplexity over consecutive non-overlapping windows of the dataset's test text (each window
// BOS + seqlen-1 text tokens, one fresh session per window), with a progress bar on stderr.
// Dataset names resolve through calibration/calibration_data.h (docs/datasets.md).
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "calibration/calibration_data.h"
#include "runtime/perplexity.h"
#include "tools/cli_support.h"
#include "tools/command.h"
#include "tools/text_model.h"

ABSL_FLAG(std::string, dataset, "", "ppl: ptb, wikitext2, tinystories or a text file");
ABSL_FLAG(int64_t, seqlen, 2048, "ppl: tokens per window");
ABSL_FLAG(int64_t, samples, 0, "ppl: windows to evaluate (0 = every whole window)");

namespace kvcc::tools {
namespace {

int RunPpl(const std::vector<std::string>& args) {
  const std::string dataset = absl::GetFlag(FLAGS_dataset);
  if (args.size() != 1 || dataset.empty()) {
    std::fprintf(stderr,
                 "usage: kvcc ppl <model> --dataset FILE|ptb|wikitext2|tinystories "
                 "[--seqlen N] [--samples N] [--device cpu] [--quant-policy 0|4]\n");
    return 2;
  }
  const int64_t seqlen = absl::GetFlag(FLAGS_seqlen);
  const int64_t samples = absl::GetFlag(FLAGS_samples);
  if (seqlen < 2) return Fail("ppl", absl::InvalidArgumentError("--seqlen must be at least 2"));
  if (samples < 0) return Fail("ppl", absl::InvalidArgumentError("--samples must be >= 0"));
  auto path = calibration::ResolveDataset(dataset, calibration::DatasetSplit::kTest);
  if (!path.ok()) return Fail("ppl", path.status());
  auto text = calibration::ReadCalibrationText(*path);
  if (!text.ok()) return Fail("ppl", text.status());
  auto model = OpenTextModel(args[0], 1);
  if (!model.ok()) return Fail("ppl", model.status());
  runtime::Engine& engine = *model->engine;
  if (seqlen > engine.max_context()) {
    return Fail("ppl", absl::InvalidArgumentError(absl::StrCat(
        "--seqlen ", seqlen, " exceeds the context of ", engine.max_context(),
        " (the model's, or --max-len)")));
  }
  const tokenizer::Tokenizer& tok = *model->tokenizer->tokenizer;
  auto ids = EncodeDatasetText(tok, *text);
  if (!ids.ok()) return Fail("ppl", ids.status());
  auto windows = calibration::ConsecutiveWindows(*ids, seqlen, samples, tok.bos_id());
  if (!windows.ok()) {
    return Fail("ppl", absl::Status(windows.status().code(),
                                    absl::StrCat(*path, ": ", windows.status().message())));
  }
  std::fprintf(stderr, "%s: %zu tokens, %zu windows of %lld\n", path->c_str(), ids->size(),
               windows->size(), static_cast<long long>(seqlen));
  auto result = runtime::Perplexity(engine, *windows, [](int64_t done, int64_t total, double ppl) {
    DrawProgress(done, total, absl::StrFormat("ppl %.4f", ppl));
  });
  if (!result.ok()) return Fail("ppl", result.status());
  std::printf("ppl %.4f (nll %.6f nats over %lld tokens in %lld windows of %lld, %s)\n",
              result->ppl, result->nll, static_cast<long long>(result->tokens),
              static_cast<long long>(result->windows), static_cast<long long>(seqlen),
              path->c_str());
  return 0;
}

}  // namespace
}  // namespace kvcc::tools

KVCC_COMMAND(ppl, "ppl <model> --dataset FILE|ptb|wikitext2|tinystories --seqlen N --samples N",
             kvcc::tools::RunPpl);
