// `kvcc kvcompare <model> --eval-dataset ptb|wikitext2|tinystories|FILE[,..] --kv-quant NAME[,..]
//  [--quant-policy 4] [--kv-params FILE] [--baseline NAME] [--eval-seqlen 512[,2048..]]
//  [--eval-samples N[,N..]] [--kv-quant-part k|v] [--dump-after kv-quantize]`: runs the same
// consecutive windows of each test text through the model with a baseline cache (fp16 unless
// --baseline) and each candidate cache, and prints, per text, window length and candidate, both
// perplexities, the mean KL divergence of the candidate's next-token distribution from the
// baseline's and their greedy-token agreement, as one JSON object per line on stdout (flushed
// as each text and length finishes; lengths outermost). The engines start once for the longest
// window and serve every text and length. --kv-quant-part quantizes only K (or V) of every
// candidate, to split a scheme's error between the two.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
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
          "kvcompare: comma-separated ptb | wikitext2 | tinystories (test text) or text files");
ABSL_FLAG(std::string, eval_seqlen, "512",
          "kvcompare: comma-separated tokens per window (BOS included), each run on every text");
ABSL_FLAG(std::string, eval_samples, "0",
          "kvcompare: at most this many windows (0 = all), one value for every --eval-seqlen or "
          "one per --eval-seqlen");
ABSL_FLAG(std::string, baseline, "fp16", "kvcompare: the baseline cache scheme");

namespace kvcc::tools {
namespace {

// The model lowered as generate/ppl run it, with the cache scheme `scheme` (or `policy`).
// A candidate takes --dump-after (the IR after the named pass, to stderr) and --kv-quant-part;
// the baseline keeps its whole scheme.
absl::StatusOr<std::shared_ptr<const ir::Module>> ModelWith(const std::string& model_dir,
                                                            int policy, const std::string& scheme,
                                                            bool candidate) {
  pipeline::LowerOptions lower = LowerOptionsFromFlags();
  lower.quant_policy = policy;
  lower.kv_quant = scheme;
  if (!candidate) {
    lower.dump = nullptr;
    lower.kv_quant_part.clear();
  }
  KVCC_ASSIGN_OR_RETURN(auto m, pipeline::LoadForExecution(model_dir, lower));
  return std::shared_ptr<const ir::Module>(std::move(m));
}

// The comma-separated positive integers of `flag` (0 allowed with `zero_ok`).
absl::StatusOr<std::vector<int64_t>> IntList(const std::string& text, const char* flag,
                                             bool zero_ok) {
  std::vector<int64_t> out;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(item, &v) || v < 0 || (v == 0 && !zero_ok)) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, ": '", item, "' is not a ",
                                                     zero_ok ? "count" : "positive length"));
    }
    out.push_back(v);
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat("--", flag, " is empty"));
  return out;
}

int RunKvCompare(const std::vector<std::string>& args) {
  if (args.size() != 1 || absl::GetFlag(FLAGS_eval_dataset).empty()) {
    std::fprintf(stderr,
                 "usage: kvcc kvcompare <model_dir> --eval-dataset ptb|wikitext2|tinystories|FILE"
                 "[,..] --kv-quant NAME[,NAME..]|--quant-policy 4 [--kv-params FILE] "
                 "[--baseline fp16] [--eval-seqlen 512[,..]] [--eval-samples N[,..]] "
                 "[--kv-quant-part k|v]\n");
    return 2;
  }
  const auto start = std::chrono::steady_clock::now();
  const std::string model_dir = args[0];
  auto seqlens = IntList(absl::GetFlag(FLAGS_eval_seqlen), "eval-seqlen", false);
  if (!seqlens.ok()) return Fail("kvcompare", seqlens.status());
  auto samples = IntList(absl::GetFlag(FLAGS_eval_samples), "eval-samples", true);
  if (!samples.ok()) return Fail("kvcompare", samples.status());
  if (samples->size() != 1 && samples->size() != seqlens->size()) {
    return Fail("kvcompare", absl::InvalidArgumentError(absl::StrCat(
                                 "--eval-samples has ", samples->size(), " values for ",
                                 seqlens->size(), " --eval-seqlen values; give one or as many")));
  }
  std::vector<std::pair<std::string, std::string>> texts;  // (as given, resolved path)
  for (absl::string_view name : absl::StrSplit(absl::GetFlag(FLAGS_eval_dataset), ',',
                                               absl::SkipEmpty())) {
    auto path = calibration::ResolveDataset(std::string(name), calibration::DatasetSplit::kTest);
    if (!path.ok()) return Fail("kvcompare", path.status());
    texts.push_back({std::string(name), *path});
  }
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
  calibration::KvCompareRun run;
  run.device = DeviceFromFlags();
  run.progress = [](int64_t done, int64_t total) { DrawProgress(done, total, ""); };
  auto comparison = calibration::KvComparison::Create(
      *baseline, candidates, *std::max_element(seqlens->begin(), seqlens->end()), run);
  if (!comparison.ok()) return Fail("kvcompare", comparison.status());
  const int32_t bos = static_cast<int32_t>((*baseline)->config.bos_token_id);
  // Every text encoded once; window lengths outermost, so a run cut short has every text at
  // the first lengths.
  std::vector<std::vector<int32_t>> encoded;
  for (const auto& text : texts) {
    auto raw = calibration::ReadCalibrationText(text.second);
    if (!raw.ok()) return Fail("kvcompare", raw.status());
    auto tokens = EncodeDatasetText(**tokenizer, *raw);
    if (!tokens.ok()) return Fail("kvcompare", tokens.status());
    encoded.push_back(*std::move(tokens));
  }
  for (size_t i = 0; i < seqlens->size(); ++i) {
    const int64_t seqlen = (*seqlens)[i];
    const int64_t count = (*samples)[samples->size() == 1 ? 0 : i];
    for (size_t d = 0; d < texts.size(); ++d) {
      const auto& [text_name, text_path] = texts[d];
      auto windows = calibration::ConsecutiveWindows(encoded[d], seqlen, count, bos);
      if (!windows.ok()) {
        return Fail("kvcompare", absl::Status(windows.status().code(),
                                              absl::StrCat(text_path, ": ",
                                                           windows.status().message())));
      }
      auto results = (*comparison)->Compare(*windows);
      if (!results.ok()) {
        return Fail("kvcompare", absl::Status(results.status().code(),
                                              absl::StrCat(text_path, " at ", seqlen, ": ",
                                                           results.status().message())));
      }
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      for (size_t c = 0; c < names.size(); ++c) {
        const calibration::KvCompareResult& r = (*results)[c];
        nlohmann::ordered_json j;
        j["model"] = model_dir;
        j["dataset"] = text_path;
        j["text"] = text_name;
        j["baseline"] = absl::GetFlag(FLAGS_baseline);
        j["candidate"] = names[c];
        if (!absl::GetFlag(FLAGS_kv_quant_part).empty()) {
          j["kv_quant_part"] = absl::GetFlag(FLAGS_kv_quant_part);
        }
        j["device"] = run.device;
        j["windows"] = r.windows;
        j["seqlen"] = seqlen;
        j["predictions"] = r.predictions;
        j["baseline_ppl"] = r.baseline_ppl();
        j["candidate_ppl"] = r.candidate_ppl();
        j["mean_kl"] = r.mean_kl();
        j["ppl_change"] = r.ppl_change();
        j["ppl_change_se"] = r.ppl_change_se();
        j["greedy_agreement"] = r.agreement();
        j["mean_kl_per_256_positions"] = r.mean_kl_by_position();
        j["mean_nll_change_per_256_positions"] = r.mean_nll_change_by_position();
        j["seconds"] = seconds;
        std::printf("%s\n", j.dump().c_str());
      }
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

KVCC_COMMAND(kvcompare,
             "kvcompare <model_dir> --eval-dataset ptb|wikitext2|tinystories|FILE[,..] --kv-quant "
             "NAME[,NAME..]|--quant-policy 4 [--kv-params FILE] [--baseline fp16] "
             "[--eval-seqlen 512[,..]] [--eval-samples N[,..]] [--kv-quant-part k|v]",
             RunKvCompare);

}  // namespace kvcc::tools
