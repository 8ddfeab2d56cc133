// Side-by-side evaluation of two KV-cache configurations of one model on the same token
// windows: perplexity of each, mean KL divergence of the candidate's next-token distribution
// from the baseline's, and how often their greedy (argmax) tokens agree. This is what the
// accuracy report measures for each quantization scheme against fp16.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/module.h"
#include "runtime/engine.h"
#include "runtime/thread_pool.h"

namespace kvcc::calibration {

struct KvCompareResult {
  int64_t windows = 0;
  int64_t predictions = 0;       // next-token predictions scored (tokens - 1 per window)
  double baseline_nll = 0.0;      // summed negative log-likelihood of the true next token
  double candidate_nll = 0.0;
  double kl_sum = 0.0;            // sum over predictions of KL(baseline || candidate), nats
  int64_t greedy_agree = 0;       // predictions whose argmax tokens are equal
  // KL sums and predictions by the predicting token's position, kKlBucket positions a bucket:
  // how the error grows with the number of attended tokens.
  static constexpr int64_t kKlBucket = 256;
  std::vector<double> kl_by_position;
  std::vector<int64_t> predictions_by_position;
  // The summed NLL change (candidate - baseline) of the same buckets: where a perplexity
  // change comes from, beside where the distributions move.
  std::vector<double> nll_change_by_position;
  // Per window: the summed NLL change (candidate - baseline) and its predictions, from which
  // the perplexity change's standard error over windows follows.
  std::vector<double> nll_change_by_window;
  std::vector<int64_t> predictions_by_window;

  double baseline_ppl() const;
  double candidate_ppl() const;
  double mean_kl() const;
  double agreement() const;
  // candidate_ppl / baseline_ppl - 1.
  double ppl_change() const;
  // Its standard error from the spread of the windows' mean NLL changes (the windows taken as
  // independent draws of the text; NAN below 2 windows). A change within about two of these of
  // a target is not resolved by the windows measured.
  double ppl_change_se() const;
  // Mean KL, and mean NLL change, of each position bucket (NAN for an empty one).
  std::vector<double> mean_kl_by_position() const;
  std::vector<double> mean_nll_change_by_position() const;
};

// KL(p || q) in nats of the softmaxes of two logit rows, in double precision.
double SoftmaxKl(const float* p_logits, const float* q_logits, int64_t vocab);

struct KvCompareRun {
  std::string device = "cpu";
  int threads = 0;  // CPU threads of the engines (cpu) and of the scoring (0: every core)
  std::function<void(int64_t, int64_t)> progress;  // (windows done, total)
};

// The baseline and candidate engines (same weights, different cache schemes) started once for
// windows of up to `context` tokens, to score any number of window sets (several texts and
// window lengths in one process).
class KvComparison {
 public:
  static absl::StatusOr<std::unique_ptr<KvComparison>> Create(
      std::shared_ptr<const ir::Module> baseline,
      const std::vector<std::shared_ptr<const ir::Module>>& candidates, int64_t context,
      const KvCompareRun& run = {});
  ~KvComparison();

  // Runs each window from position 0 in a fresh session of the baseline and of every candidate
  // and scores every position's next-token prediction within the window; one result per
  // candidate, in order. The baseline runs once per window however many candidates there are;
  // the scoring of each window's rows is spread over the scoring threads.
  absl::StatusOr<std::vector<KvCompareResult>> Compare(
      const std::vector<std::vector<int32_t>>& windows);

 private:
  KvComparison() = default;
  KvCompareRun run_;
  int64_t context_ = 0;
  std::unique_ptr<runtime::Engine> base_;
  std::vector<std::unique_ptr<runtime::Engine>> cands_;
  std::unique_ptr<runtime::ThreadPool> pool_;
};

// KvComparison for the longest of `windows`, run once over them.
absl::StatusOr<std::vector<KvCompareResult>> CompareKvCaches(
    std::shared_ptr<const ir::Module> baseline,
    const std::vector<std::shared_ptr<const ir::Module>>& candidates,
    const std::vector<std::vector<int32_t>>& windows, const KvCompareRun& run = {});

}  // namespace kvcc::calibration
