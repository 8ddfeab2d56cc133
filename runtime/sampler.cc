#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"

namespace kvcc::runtime {

absl::Status SamplingParams::Validate() const {
  if (!(temperature >= 0.0) || !std::isfinite(temperature)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "temperature ", temperature, " is invalid: expected a finite value >= 0 (0 = greedy)"));
  }
  if (top_k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("top-k ", top_k, " is invalid: expected >= 0 (0 = off)"));
  }
  if (!(top_p > 0.0 && top_p <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("top-p ", top_p, " is invalid: expected a value in (0, 1]"));
  }
  if (!(repetition_penalty > 0.0) || !std::isfinite(repetition_penalty)) {
    return absl::InvalidArgumentError(absl::StrCat("repetition penalty ", repetition_penalty,
                                                   " is invalid: expected a finite value > 0"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Sampler> Sampler::Create(const SamplingParams& params) {
  KVCC_RETURN_IF_ERROR(params.Validate());
  return Sampler(params);
}

std::vector<double> Sampler::Distribution(const float* logits, int64_t vocab,
                                          const std::vector<int32_t>& history) const {
  std::vector<double> score(logits, logits + vocab);
  if (params_.repetition_penalty != 1.0) {
    // transformers' RepetitionPenaltyLogitsProcessor: each seen token once, positive scores
    // divided, negative ones multiplied.
    std::vector<bool> seen(vocab, false);
    for (int32_t t : history) {
      if (t < 0 || t >= vocab || seen[t]) continue;
      seen[t] = true;
      score[t] = score[t] < 0 ? score[t] * params_.repetition_penalty
                              : score[t] / params_.repetition_penalty;
    }
  }
  std::vector<double> probs(vocab, 0.0);
  if (params_.greedy()) {
    probs[std::max_element(score.begin(), score.end()) - score.begin()] = 1.0;
    return probs;
  }
  for (double& s : score) s /= params_.temperature;
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  // Highest score first; ties keep the lower id first so the order is deterministic.
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return score[a] > score[b]; });
  int64_t keep = vocab;
  if (params_.top_k > 0 && params_.top_k < vocab) {
    // Like transformers, every token scoring at least the k-th highest stays.
    const double kth = score[order[params_.top_k - 1]];
    keep = params_.top_k;
    while (keep < vocab && score[order[keep]] >= kth) ++keep;
  }
  const double top = score[order[0]];
  std::vector<double> p(keep);
  double sum = 0;
  for (int64_t i = 0; i < keep; ++i) sum += p[i] = std::exp(score[order[i]] - top);
  for (double& x : p) x /= sum;
  if (params_.top_p < 1.0) {
    // Smallest prefix of the sorted tokens whose mass reaches top_p (at least one token).
    double cum = 0;
    int64_t n = 0;
    while (n < keep) {
      cum += p[n++];
      if (cum >= params_.top_p) break;
    }
    keep = n;
    p.resize(keep);
    sum = std::accumulate(p.begin(), p.end(), 0.0);
    for (double& x : p) x /= sum;
  }
  for (int64_t i = 0; i < keep; ++i) probs[order[i]] = p[i];
  return probs;
}

double Sampler::NextUniform() {
  // 53 random bits -> [0, 1), independent of the standard library's distribution code.
  return static_cast<double>(rng_() >> 11) * (1.0 / 9007199254740992.0);
}

absl::StatusOr<int32_t> Sampler::Sample(const float* logits, int64_t vocab,
                                        const std::vector<int32_t>& history) {
  return Pick(params_, logits, vocab, history, params_.greedy() ? 0.0 : NextUniform());
}

absl::StatusOr<int32_t> Sampler::Pick(const SamplingParams& params, const float* logits,
                                      int64_t vocab, const std::vector<int32_t>& history,
                                      double uniform) {
  if (vocab <= 0) return absl::InvalidArgumentError("sampler: empty logits");
  for (int64_t i = 0; i < vocab; ++i) {
    if (std::isnan(logits[i])) {
      return absl::InvalidArgumentError(absl::StrCat("sampler: logit ", i, " is NaN"));
    }
  }
  std::vector<double> probs = Sampler(params).Distribution(logits, vocab, history);
  if (params.greedy()) {
    return static_cast<int32_t>(std::max_element(probs.begin(), probs.end()) - probs.begin());
  }
  double cum = 0;
  int32_t last = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    if (probs[i] <= 0) continue;
    last = static_cast<int32_t>(i);
    cum += probs[i];
    if (uniform < cum) return last;
  }
  return last;
}

}  // namespace kvcc::runtime
