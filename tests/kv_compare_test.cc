// Side-by-side cache comparison: the KL divergence helper, and CompareKvCaches on stories260K
// (identical configurations agree exactly; a coarse cache diverges; perplexity matches a
// direct computation from the engine's logits).
#include <algorithm>
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "calibration/kv_compare.h"
#include "passes/kv_quantize.h"
#include "runtime/backend_factory.h"
#include "runtime/backend.h"
#include "runtime/engine.h"
#include "runtime/perplexity.h"
#include "tests/test_util.h"

namespace kvcc::calibration {
namespace {

TEST(SoftmaxKlTest, MatchesTheDefinition) {
  const float p[] = {0.0f, 0.0f};
  const float q[] = {std::log(3.0f), 0.0f};  // softmax (3/4, 1/4)
  EXPECT_NEAR(SoftmaxKl(p, q, 2), 0.5 * std::log(0.5 / 0.75) + 0.5 * std::log(0.5 / 0.25), 1e-7);
  EXPECT_EQ(SoftmaxKl(q, q, 2), 0.0);
  const float shifted[] = {std::log(3.0f) + 7.0f, 7.0f};  // same distribution
  EXPECT_NEAR(SoftmaxKl(q, shifted, 2), 0.0, 1e-12);
  EXPECT_GT(SoftmaxKl(q, p, 2), 0.0);
}

// The stories260K model (shared, as the passes take it) and windows over its 512-token vocab.
std::shared_ptr<ir::Module> Stories() { return testing::LoadStories260K(); }

std::vector<std::vector<int32_t>> IdWindows(int count, int len, uint32_t seed) {
  return testing::RandomTokenWindows(count, len, 512, seed);
}

TEST(KvCompareTest, IdenticalCachesAgreeExactly) {
  auto a = Stories(), b = Stories();
  ASSERT_NE(a, nullptr);
  KvCompareRun run;
  run.threads = 1;
  KVCC_ASSERT_OK_AND_ASSIGN(rs, CompareKvCaches(a, {b}, IdWindows(2, 40, 1), run));
  ASSERT_EQ(rs.size(), 1u);
  const KvCompareResult& r = rs[0];
  EXPECT_EQ(r.windows, 2);
  EXPECT_EQ(r.predictions, 2 * 39);
  EXPECT_EQ(r.baseline_nll, r.candidate_nll);
  EXPECT_EQ(r.mean_kl(), 0.0);
  EXPECT_EQ(r.agreement(), 1.0);
}

TEST(KvCompareTest, CoarseCacheDivergesAndPerplexityIsTheEnginesOwn) {
  auto base = Stories(), cand = Stories();
  ASSERT_NE(base, nullptr);
  auto cand8 = Stories();
  KVCC_ASSERT_OK(passes::KvQuantizePass(passes::KvQuantScheme::kInt4Online).Run(*cand));
  KVCC_ASSERT_OK(passes::KvQuantizePass(passes::KvQuantScheme::kInt8Online).Run(*cand8));
  const auto windows = IdWindows(2, 48, 2);
  KvCompareRun run;
  run.threads = 1;
  KVCC_ASSERT_OK_AND_ASSIGN(rs, CompareKvCaches(base, {cand, cand8}, windows, run));
  ASSERT_EQ(rs.size(), 2u);
  const KvCompareResult& r = rs[0];
  // One baseline for all candidates; the finer cache stays closer to it.
  EXPECT_EQ(rs[1].baseline_nll, r.baseline_nll);
  EXPECT_LT(rs[1].mean_kl(), r.mean_kl());
  // Each candidate alone gives the same figures.
  KVCC_ASSERT_OK_AND_ASSIGN(alone, CompareKvCaches(base, {cand8}, windows, run));
  EXPECT_EQ(alone[0].candidate_nll, rs[1].candidate_nll);
  EXPECT_EQ(alone[0].kl_sum, rs[1].kl_sum);
  EXPECT_GT(r.mean_kl(), 0.0);
  EXPECT_NE(r.baseline_nll, r.candidate_nll);
  EXPECT_LE(r.agreement(), 1.0);

  // Baseline perplexity straight from the engine's logits.
  KVCC_ASSERT_OK_AND_ASSIGN(backend, runtime::CreateBackend("cpu", 1));
  KVCC_ASSERT_OK_AND_ASSIGN(engine, runtime::Engine::Create(base, std::move(backend)));
  double nll = 0;
  int64_t n = 0;
  const int64_t vocab = engine->vocab_size();
  for (const auto& w : windows) {
    KVCC_ASSERT_OK_AND_ASSIGN(s, engine->CreateSession());
    KVCC_ASSERT_OK_AND_ASSIGN(logits, engine->PrefillAll(s, w));
    for (size_t t = 0; t + 1 < w.size(); ++t) {
      const float* row = logits.data() + t * vocab;
      double sum = 0;
      for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(row[i]));
      nll += std::log(sum) - row[w[t + 1]];
      ++n;
    }
  }
  EXPECT_EQ(n, r.predictions);
  EXPECT_NEAR(std::exp(nll / n), r.baseline_ppl(), 1e-9 * r.baseline_ppl());
}

// --kv-quant-part: the engines run a cache with only K (or only V) quantized; each part alone
// moves the logits, by its own amount (the parts' errors need not add: on these windows K
// alone diverges more than K and V together).
TEST(KvCompareTest, EachPartAloneDiverges) {
  auto base = Stories(), both = Stories(), k_only = Stories(), v_only = Stories();
  ASSERT_NE(base, nullptr);
  const auto scheme = passes::KvQuantScheme::kInt4Online;
  KVCC_ASSERT_OK(passes::KvQuantizePass(scheme).Run(*both));
  KVCC_ASSERT_OK(passes::KvQuantizePass(scheme, ir::KvPart::kKey).Run(*k_only));
  KVCC_ASSERT_OK(passes::KvQuantizePass(scheme, ir::KvPart::kValue).Run(*v_only));
  KvCompareRun run;
  run.threads = 1;
  KVCC_ASSERT_OK_AND_ASSIGN(rs, CompareKvCaches(base, {both, k_only, v_only},
                                                IdWindows(2, 48, 3), run));
  ASSERT_EQ(rs.size(), 3u);
  for (int part : {1, 2}) {
    EXPECT_GT(rs[part].mean_kl(), 0.0) << part;
    EXPECT_NE(rs[part].candidate_nll, rs[0].candidate_nll) << part;
  }
  EXPECT_NE(rs[1].candidate_nll, rs[2].candidate_nll);
}

// The scores CompareKvCaches accumulates (KL through the baseline's cached log-probabilities,
// rows scored on several threads) equal the direct formulas over the two engines' logits,
// overall and by position bucket.
TEST(KvCompareTest, ScoresMatchTheDirectFormulasByPosition) {
  auto base = Stories(), cand = Stories();
  ASSERT_NE(base, nullptr);
  KVCC_ASSERT_OK(passes::KvQuantizePass(passes::KvQuantScheme::kInt4Online).Run(*cand));
  const auto windows = IdWindows(2, 300, 3);
  KvCompareRun run;
  run.threads = 3;
  KVCC_ASSERT_OK_AND_ASSIGN(rs, CompareKvCaches(base, {cand}, windows, run));
  const KvCompareResult& r = rs[0];
  std::vector<double> kl(2, 0.0), nll_change(2, 0.0);
  std::vector<int64_t> count(2, 0);
  int64_t agree = 0;
  double nll = 0;
  KVCC_ASSERT_OK_AND_ASSIGN(bb, runtime::CreateBackend("cpu", 1));
  KVCC_ASSERT_OK_AND_ASSIGN(cb, runtime::CreateBackend("cpu", 1));
  KVCC_ASSERT_OK_AND_ASSIGN(be, runtime::Engine::Create(base, std::move(bb)));
  KVCC_ASSERT_OK_AND_ASSIGN(ce, runtime::Engine::Create(cand, std::move(cb)));
  const int64_t vocab = be->vocab_size();
  for (const auto& w : windows) {
    KVCC_ASSERT_OK_AND_ASSIGN(lb, runtime::WindowLogits(*be, w));
    KVCC_ASSERT_OK_AND_ASSIGN(lc, runtime::WindowLogits(*ce, w));
    for (size_t t = 0; t + 1 < w.size(); ++t) {
      const float* pb = lb.data() + t * vocab;
      const float* pc = lc.data() + t * vocab;
      kl[t / KvCompareResult::kKlBucket] += SoftmaxKl(pb, pc, vocab);
      ++count[t / KvCompareResult::kKlBucket];
      agree += std::max_element(pb, pb + vocab) - pb == std::max_element(pc, pc + vocab) - pc;
      const double cand_nll = runtime::LogSumExp(pc, vocab) - pc[w[t + 1]];
      nll += cand_nll;
      nll_change[t / KvCompareResult::kKlBucket] +=
          cand_nll - (runtime::LogSumExp(pb, vocab) - pb[w[t + 1]]);
    }
  }
  ASSERT_EQ(r.kl_by_position.size(), 2u);
  for (int b = 0; b < 2; ++b) {
    EXPECT_EQ(r.predictions_by_position[b], count[b]);
    EXPECT_NEAR(r.kl_by_position[b], kl[b], 1e-9 * kl[b]) << "bucket " << b;
    EXPECT_NEAR(r.nll_change_by_position[b], nll_change[b], 1e-9 * std::abs(nll) + 1e-12)
        << "bucket " << b;
    EXPECT_NEAR(r.mean_nll_change_by_position()[b], nll_change[b] / count[b],
                1e-9 * std::abs(nll) / count[b] + 1e-12);
  }
  EXPECT_NE(r.nll_change_by_position[0], 0.0);
  EXPECT_NEAR(r.kl_sum, kl[0] + kl[1], 1e-9 * r.kl_sum);
  EXPECT_EQ(r.greedy_agree, agree);
  EXPECT_NEAR(r.candidate_nll, nll, 1e-9 * nll);
  EXPECT_GT(r.mean_kl_by_position()[1], 0.0);
}

// The perplexity change and its standard error over windows, against the textbook formulas
// over the windows' own NLL changes (equal windows: the sample standard deviation of their mean
// changes over sqrt(windows)).
TEST(KvCompareTest, PerplexityChangeCarriesItsStandardErrorOverWindows) {
  auto base = Stories(), cand = Stories();
  ASSERT_NE(base, nullptr);
  KVCC_ASSERT_OK(passes::KvQuantizePass(passes::KvQuantScheme::kInt4Online).Run(*cand));
  const auto windows = IdWindows(4, 33, 5);
  KvCompareRun run;
  run.threads = 2;
  KVCC_ASSERT_OK_AND_ASSIGN(rs, CompareKvCaches(base, {cand}, windows, run));
  const KvCompareResult& r = rs[0];
  ASSERT_EQ(r.nll_change_by_window.size(), 4u);
  KVCC_ASSERT_OK_AND_ASSIGN(bb, runtime::CreateBackend("cpu", 1));
  KVCC_ASSERT_OK_AND_ASSIGN(cb, runtime::CreateBackend("cpu", 1));
  KVCC_ASSERT_OK_AND_ASSIGN(be, runtime::Engine::Create(base, std::move(bb)));
  KVCC_ASSERT_OK_AND_ASSIGN(ce, runtime::Engine::Create(cand, std::move(cb)));
  const int64_t vocab = be->vocab_size();
  std::vector<double> means;
  for (size_t w = 0; w < windows.size(); ++w) {
    KVCC_ASSERT_OK_AND_ASSIGN(lb, runtime::WindowLogits(*be, windows[w]));
    KVCC_ASSERT_OK_AND_ASSIGN(lc, runtime::WindowLogits(*ce, windows[w]));
    double change = 0;
    for (size_t t = 0; t + 1 < windows[w].size(); ++t) {
      const float* pb = lb.data() + t * vocab;
      const float* pc = lc.data() + t * vocab;
      const int32_t next = windows[w][t + 1];
      change += (runtime::LogSumExp(pc, vocab) - pc[next]) - (runtime::LogSumExp(pb, vocab) - pb[next]);
    }
    EXPECT_NEAR(r.nll_change_by_window[w], change, 1e-9 * std::fabs(change) + 1e-12) << w;
    EXPECT_EQ(r.predictions_by_window[w], 32);
    means.push_back(change / 32);
  }
  double mean = 0, var = 0;
  for (double m : means) mean += m / means.size();
  for (double m : means) var += (m - mean) * (m - mean) / (means.size() - 1);
  EXPECT_NEAR(r.ppl_change(), r.candidate_ppl() / r.baseline_ppl() - 1, 1e-12);
  EXPECT_NEAR(r.ppl_change_se(), std::exp(mean) * std::sqrt(var / means.size()),
              1e-9 * r.ppl_change_se());
  EXPECT_GT(r.ppl_change_se(), 0.0);
  // One window says nothing about the spread.
  KVCC_ASSERT_OK_AND_ASSIGN(one, CompareKvCaches(base, {cand}, {windows[0]}, run));
  EXPECT_TRUE(std::isnan(one[0].ppl_change_se()));
}

TEST(KvCompareTest, RejectsBadWindows) {
  auto a = Stories();
  ASSERT_NE(a, nullptr);
  EXPECT_FALSE(CompareKvCaches(a, {a}, {}).ok());
  EXPECT_FALSE(CompareKvCaches(a, {}, {{1, 5}}).ok());
  EXPECT_FALSE(CompareKvCaches(a, {a}, {{1}}).ok());
  absl::Status s = CompareKvCaches(a, {a}, {{1, 5, 100000}}).status();
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace kvcc::calibration
