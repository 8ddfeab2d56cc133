#include "calibration/kv_compare.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "calibration/calibration_windows.h"
#include "ir/status_macros.h"
#include "runtime/perplexity.h"

namespace kvcc::calibration {
namespace {

int64_t Argmax(const float* x, int64_t n) {
  return std::max_element(x, x + n) - x;
}

}  // namespace

double KvCompareResult::baseline_ppl() const {
  return predictions > 0 ? std::exp(baseline_nll / predictions) : NAN;
}
double KvCompareResult::candidate_ppl() const {
  return predictions > 0 ? std::exp(candidate_nll / predictions) : NAN;
}
double KvCompareResult::mean_kl() const { return predictions > 0 ? kl_sum / predictions : NAN; }
double KvCompareResult::agreement() const {
  return predictions > 0 ? double(greedy_agree) / predictions : NAN;
}

double SoftmaxKl(const float* p, const float* q, int64_t vocab) {
  const double lp = runtime::LogSumExp(p, vocab), lq = runtime::LogSumExp(q, vocab);
  double kl = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    const double log_p = double(p[i]) - lp, log_q = double(q[i]) - lq;
    kl += std::exp(log_p) * (log_p - log_q);
  }
  return std::max(kl, 0.0);  // rounding can leave a tiny negative for equal rows
}

absl::StatusOr<std::vector<KvCompareResult>> CompareKvCaches(
    std::shared_ptr<const ir::Module> baseline,
    const std::vector<std::shared_ptr<const ir::Module>>& candidates,
    const std::vector<std::vector<int32_t>>& windows, const KvCompareRun& run) {
  if (baseline == nullptr || candidates.empty()) {
    return absl::InvalidArgumentError("a baseline and at least one candidate are needed");
  }
  if (windows.empty()) return absl::InvalidArgumentError("no windows to evaluate");
  int64_t longest = 0;
  for (const auto& w : windows) {
    if (w.size() < 2) return absl::InvalidArgumentError("each window needs at least 2 tokens");
    longest = std::max<int64_t>(longest, w.size());
  }
  KVCC_ASSIGN_OR_RETURN(auto base, StartWindowEngine(baseline, longest, run.device,
                                                     run.threads, "--eval-seqlen"));
  const int64_t vocab = base->vocab_size();
  std::vector<std::unique_ptr<runtime::Engine>> cands;
  for (const auto& c : candidates) {
    if (c == nullptr) return absl::InvalidArgumentError("null candidate module");
    KVCC_ASSIGN_OR_RETURN(
        auto e, StartWindowEngine(c, longest, run.device, run.threads, "--eval-seqlen"));
    if (e->vocab_size() != vocab) {
      return absl::InvalidArgumentError("baseline and candidate have different vocabularies");
    }
    cands.push_back(std::move(e));
  }
  std::vector<KvCompareResult> results(candidates.size());
  for (size_t w = 0; w < windows.size(); ++w) {
    const auto& tokens = windows[w];
    for (size_t t = 1; t < tokens.size(); ++t) {
      if (tokens[t] < 0 || tokens[t] >= vocab) {
        return absl::InvalidArgumentError(absl::StrCat("window ", w, " holds token ", tokens[t],
                                                       " outside the vocabulary of ", vocab));
      }
    }
    KVCC_ASSIGN_OR_RETURN(auto lb, runtime::WindowLogits(*base, tokens));
    for (size_t c = 0; c < cands.size(); ++c) {
      KVCC_ASSIGN_OR_RETURN(auto lc, runtime::WindowLogits(*cands[c], tokens));
      KvCompareResult& r = results[c];
      for (size_t t = 0; t + 1 < tokens.size(); ++t) {
        const float* pb = lb.data() + t * vocab;
        const float* pc = lc.data() + t * vocab;
        const int32_t next = tokens[t + 1];
        r.baseline_nll += runtime::LogSumExp(pb, vocab) - pb[next];
        r.candidate_nll += runtime::LogSumExp(pc, vocab) - pc[next];
        r.kl_sum += SoftmaxKl(pb, pc, vocab);
        r.greedy_agree += Argmax(pb, vocab) == Argmax(pc, vocab);
        ++r.predictions;
      }
      ++r.windows;
    }
    if (run.progress) run.progress(static_cast<int64_t>(w) + 1, windows.size());
  }
  return results;
}

}  // namespace kvcc::calibration
