// `kvcc kvcompare <model> --eval-dataset ptb|wikitext2|tinystories|FILE --kv-quant NAME[,NAME..]
//  [--quant-policy 4] [--kv-params FILE] [--baseline NAME] [--eval-seqlen 512]
//  [--eval-samples N] [--dump-after kv-quantize]`: runs the same consecutive windows of the
// test text through the model with a baseline cache (fp16 unless --baseline) and each
// candidate cache, and prints, per candidate, both perplexities, the mean KL divergence of the
// candidate's next-token distribution from the baseline's and their greedy-token agreement, as
// one JSON object per line on stdout.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "calibration/calibration_data.h"
#include "calibration/kv_compare.h"
#include "ir/status_macros.h"
#include "passes/kv_quant_scheme.h"
#include "pipeline/model_opener.h"
#include "tools/cli_support.h"
#include "tools/command.h"
#include "tools/flags.h"
#include "tools/text_model.h"

ABSL_FLAG(std::string, eval_dataset, "",
          "kvcompare: ptb | wikitext2 | tinystories (test text) or a text file");
ABSL_FLAG(int64_t, eval_seqlen, 512, "kvcompare: tokens per window (BOS included)");
ABSL_FLAG(int64_t, eval_samples, 0, "kvcompare: at most this many windows (0 = all)");
ABSL_FLAG(std::string, baseline, "fp16", "kvcompare: the baseline cache scheme");

namespace kvcc::tools {
namespace {

// The model lowered as generate/ppl run it, with the cache scheme `scheme` (or `policy`).
// With `dump`, --dump-after prints the IR after the named pass to stderr.
absl::StatusOr<std::shared_ptr<const ir::Module>> ModelWith(const std::string& model_dir,
                                                            int policy, const std::string& scheme,
                                                            bool dump) {
  pipeline::LowerOptions lower = LowerOptionsFromFlags();
  lower.quant_policy = policy;
  lower.kv_quant = scheme;
  if (!dump) lower.dump = nullptr;
  KVCC_ASSIGN_OR_RETURN(auto m, pipeline::LoadForExecution(model_dir, lower));
  return std::shared_ptr<const ir::Module>(std::move(m));
}

int RunKvCompare(const std::vector<std::string>& args) {
  if (args.size() != 1 || absl::GetFlag(FLAGS_eval_dataset).empty()) {
    std::fprintf(stderr,
                 "usage: kvcc kvcompare <model_dir> --eval-dataset ptb|wikitext2|tinystories|FILE "
                 "--kv-quant NAME[,NAME..]|--quant-policy 4 [--kv-params FILE] [--baseline fp16] "
                 "[--eval-seqlen 512] [--eval-samples N]\n");
    return 2;
  }
  const auto start = std::chrono::steady_clock::now();
  const std::string model_dir = args[0];
  auto text_path = calibration::ResolveDataset(absl::GetFlag(FLAGS_eval_dataset),
                                          calibration::DatasetSplit::kTest);
  if (!text_path.ok()) return Fail("kvcompare", text_path.status());
  auto baseline = ModelWith(model_dir, 0, absl::GetFlag(FLAGS_baseline), false);
  if (!baseline.ok()) return Fail("kvcompare", baseline.status());
  // Candidates: --quant-policy 4 and/or the comma-separated --kv-quant names.
  std::vector<std::string> names;
  if (absl::GetFlag(FLAGS_quant_policy) != 0) {
    auto policy = passes::ResolveKvQuantScheme(absl::GetFlag(FLAGS_quant_policy), "");
    if (!policy.ok()) return Fail("kvcompare", policy.status());
    names.push_back(std::string(passes::KvQuantSchemeName(*policy)));
  }
  for (absl::string_view name : absl::StrSplit(absl::GetFlag(FLAGS_kv_quant), ',',
                                               absl::SkipEmpty())) {
    names.push_back(std::string(name));
  }
  if (names.empty()) {
    return Fail("kvcompare", absl::InvalidArgumentError("no candidate: give --kv-quant NAME"));
  }
  std::vector<std::shared_ptr<const ir::Module>> candidates;
  for (const std::string& name : names) {
    auto candidate = ModelWith(model_dir, 0, name, true);
    if (!candidate.ok()) return Fail("kvcompare", candidate.status());
    candidates.push_back(std::move(*candidate));
  }

  auto tokenizer = OpenTokenizer(model_dir);
  if (!tokenizer.ok()) return Fail("kvcompare", tokenizer.status());
  auto text = calibration::ReadCalibrationText(*text_path);
  if (!text.ok()) return Fail("kvcompare", text.status());
  auto tokens = EncodeDatasetText(**tokenizer, *text);
  if (!tokens.ok()) return Fail("kvcompare", tokens.status());
  const int64_t seqlen = absl::GetFlag(FLAGS_eval_seqlen);
  auto windows = calibration::ConsecutiveWindows(*tokens, seqlen, absl::GetFlag(FLAGS_eval_samples),
                                            static_cast<int32_t>((*baseline)->config.bos_token_id));
  if (!windows.ok()) return Fail("kvcompare", windows.status());

  calibration::KvCompareRun run;
  run.device = DeviceFromFlags();
  run.progress = [](int64_t done, int64_t total) { DrawProgress(done, total, ""); };
  auto results = calibration::CompareKvCaches(*baseline, candidates, *windows, run);
  if (!results.ok()) return Fail("kvcompare", results.status());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (size_t c = 0; c < names.size(); ++c) {
    const calibration::KvCompareResult& r = (*results)[c];
    nlohmann::ordered_json j;
    j["model"] = model_dir;
    j["dataset"] = *text_path;
    j["baseline"] = absl::GetFlag(FLAGS_baseline);
    j["candidate"] = names[c];
    j["windows"] = r.windows;
    j["seqlen"] = seqlen;
    j["predictions"] = r.predictions;
    j["baseline_ppl"] = r.baseline_ppl();
    j["candidate_ppl"] = r.candidate_ppl();
    j["mean_kl"] = r.mean_kl();
    j["greedy_agreement"] = r.agreement();
    j["seconds"] = seconds;
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}

}  // namespace

KVCC_COMMAND(kvcompare,
             "kvcompare <model_dir> --eval-dataset ptb|wikitext2|tinystories|FILE --kv-quant "
             "NAME[,NAME..]|--quant-policy 4 [--kv-params FILE] [--baseline fp16] [--eval-seqlen 512] "
             "[--eval-samples N]",
             RunKvCompare);

}  // namespace kvcc::tools
