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
double KvCompareResult::ppl_change() const {
  return predictions > 0 ? std::exp((candidate_nll - baseline_nll) / predictions) - 1.0 : NAN;
}
double KvCompareResult::ppl_change_se() const {
  const size_t w = nll_change_by_window.size();
  if (w < 2 || predictions <= 0) return NAN;
  // The mean change D = sum_w c_w / N is a ratio estimate over windows: its variance is
  // w/(w-1) * sum_w (c_w - n_w D)^2 / N^2; exp(D) turns it into the ratio's.
  const double n = static_cast<double>(predictions);
  const double d = (candidate_nll - baseline_nll) / n;
  double ss = 0;
  for (size_t i = 0; i < w; ++i) {
    const double r = nll_change_by_window[i] - predictions_by_window[i] * d;
    ss += r * r;
  }
  return std::exp(d) * std::sqrt(ss * w / (w - 1.0)) / n;
}
namespace {
std::vector<double> MeanByPosition(const std::vector<double>& sums,
                                   const std::vector<int64_t>& counts) {
  std::vector<double> out(sums.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = counts[i] > 0 ? sums[i] / counts[i] : NAN;
  return out;
}
}  // namespace
std::vector<double> KvCompareResult::mean_kl_by_position() const {
  return MeanByPosition(kl_by_position, predictions_by_position);
}
std::vector<double> KvCompareResult::mean_nll_change_by_position() const {
  return MeanByPosition(nll_change_by_position, predictions_by_position);
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

absl::StatusOr<std::unique_ptr<KvComparison>> KvComparison::Create(
    std::shared_ptr<const ir::Module> baseline,
    const std::vector<std::shared_ptr<const ir::Module>>& candidates, int64_t context,
    const KvCompareRun& run) {
  if (baseline == nullptr || candidates.empty()) {
    return absl::InvalidArgumentError("a baseline and at least one candidate are needed");
  }
  std::unique_ptr<KvComparison> c(new KvComparison());
  c->run_ = run;
  c->context_ = context;
  KVCC_ASSIGN_OR_RETURN(c->base_, StartWindowEngine(baseline, context, run.device, run.threads,
                                                    "--eval-seqlen"));
  for (const auto& m : candidates) {
    if (m == nullptr) return absl::InvalidArgumentError("null candidate module");
    KVCC_ASSIGN_OR_RETURN(
        auto e, StartWindowEngine(m, context, run.device, run.threads, "--eval-seqlen"));
    if (e->vocab_size() != c->base_->vocab_size()) {
      return absl::InvalidArgumentError("baseline and candidate have different vocabularies");
    }
    c->cands_.push_back(std::move(e));
  }
  c->pool_ = std::make_unique<runtime::ThreadPool>(run.threads);
  return c;
}

KvComparison::~KvComparison() = default;

absl::StatusOr<std::vector<KvCompareResult>> KvComparison::Compare(
    const std::vector<std::vector<int32_t>>& windows) {
  if (windows.empty()) return absl::InvalidArgumentError("no windows to evaluate");
  const int64_t vocab = base_->vocab_size();
  for (size_t w = 0; w < windows.size(); ++w) {
    if (windows[w].size() < 2) {
      return absl::InvalidArgumentError("each window needs at least 2 tokens");
    }
    if (static_cast<int64_t>(windows[w].size()) > context_) {
      return absl::InvalidArgumentError(absl::StrCat("window ", w, " has ", windows[w].size(),
                                                     " tokens; the engines hold ", context_));
    }
    for (size_t t = 1; t < windows[w].size(); ++t) {
      if (windows[w][t] < 0 || windows[w][t] >= vocab) {
        return absl::InvalidArgumentError(absl::StrCat("window ", w, " holds token ",
                                                       windows[w][t], " outside the vocabulary of ",
                                                       vocab));
      }
    }
  }
  std::vector<KvCompareResult> results(cands_.size());
  // Per baseline row: its log-probabilities and probabilities (double), log-sum-exp and
  // argmax, computed once per window for every candidate. KL(p || q) = sum p (lp - lq) with
  // lq = q - lse(q): one exp pass over each candidate row.
  std::vector<double> base_lp, base_p;
  std::vector<double> base_nll;
  std::vector<int64_t> base_argmax;
  struct RowScore {
    double nll = 0, kl = 0;
    bool agree = false;
  };
  std::vector<RowScore> scores;
  for (size_t w = 0; w < windows.size(); ++w) {
    const auto& tokens = windows[w];
    const int64_t rows = static_cast<int64_t>(tokens.size()) - 1;
    KVCC_ASSIGN_OR_RETURN(auto lb, runtime::WindowLogits(*base_, tokens));
    base_lp.resize(rows * vocab);
    base_p.resize(rows * vocab);
    base_nll.resize(rows);
    base_argmax.resize(rows);
    pool_->ParallelFor(rows, 8, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const float* pb = lb.data() + t * vocab;
        const double lse = runtime::LogSumExp(pb, vocab);
        for (int64_t i = 0; i < vocab; ++i) {
          const double lp = double(pb[i]) - lse;
          base_lp[t * vocab + i] = lp;
          base_p[t * vocab + i] = std::exp(lp);
        }
        base_nll[t] = lse - pb[tokens[t + 1]];
        base_argmax[t] = Argmax(pb, vocab);
      }
    });
    for (size_t c = 0; c < cands_.size(); ++c) {
      KVCC_ASSIGN_OR_RETURN(auto lc, runtime::WindowLogits(*cands_[c], tokens));
      scores.assign(rows, RowScore{});
      pool_->ParallelFor(rows, 8, [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
          const float* pc = lc.data() + t * vocab;
          const double lse = runtime::LogSumExp(pc, vocab);
          const double* lp = base_lp.data() + t * vocab;
          const double* p = base_p.data() + t * vocab;
          double kl = 0;
          for (int64_t i = 0; i < vocab; ++i) kl += p[i] * (lp[i] - (double(pc[i]) - lse));
          scores[t] = {lse - pc[tokens[t + 1]], std::max(kl, 0.0),
                       Argmax(pc, vocab) == base_argmax[t]};
        }
      });
      KvCompareResult& r = results[c];
      const size_t buckets = (rows + KvCompareResult::kKlBucket - 1) / KvCompareResult::kKlBucket;
      if (r.kl_by_position.size() < buckets) {
        r.kl_by_position.resize(buckets, 0.0);
        r.predictions_by_position.resize(buckets, 0);
        r.nll_change_by_position.resize(buckets, 0.0);
      }
      double change = 0;
      for (int64_t t = 0; t < rows; ++t) {
        const double d = scores[t].nll - base_nll[t];
        const int64_t bucket = t / KvCompareResult::kKlBucket;
        change += d;
        r.baseline_nll += base_nll[t];
        r.candidate_nll += scores[t].nll;
        r.kl_sum += scores[t].kl;
        r.kl_by_position[bucket] += scores[t].kl;
        r.nll_change_by_position[bucket] += d;
        ++r.predictions_by_position[bucket];
        r.greedy_agree += scores[t].agree;
        ++r.predictions;
      }
      r.nll_change_by_window.push_back(change);
      r.predictions_by_window.push_back(rows);
      ++r.windows;
    }
    if (run_.progress) run_.progress(static_cast<int64_t>(w) + 1, windows.size());
  }
  return results;
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
  KVCC_ASSIGN_OR_RETURN(auto comparison, KvComparison::Create(baseline, candidates, longest, run));
  return comparison->Compare(windows);
}

}  // namespace kvcc::calibration
