// Sampling: parameter validation, greedy, seeded reproducibility, empirical distributions
// against the analytic softmax for temperature / top-k / top-p, and the repetition penalty.
#include "runtime/sampler.h"

#include <cmath>
#include <map>

#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace kvcc::runtime {
namespace {

SamplingParams Params(double temperature, int top_k = 0, double top_p = 1.0,
                      double penalty = 1.0, uint64_t seed = 1) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.repetition_penalty = penalty;
  p.seed = seed;
  return p;
}

TEST(SamplerTest, InvalidValuesAreClearErrors) {
  struct Case {
    SamplingParams p;
    const char* mentions;
  };
  for (const Case& c : {Case{Params(-0.5), "temperature"}, Case{Params(NAN), "temperature"},
                        Case{Params(1.0, -1), "top-k"}, Case{Params(1.0, 0, 0.0), "top-p"},
                        Case{Params(1.0, 0, 1.5), "top-p"}, Case{Params(1.0, 0, -0.1), "top-p"},
                        Case{Params(1.0, 0, 1.0, 0.0), "repetition penalty"},
                        Case{Params(1.0, 0, 1.0, -2.0), "repetition penalty"}}) {
    auto s = Sampler::Create(c.p);
    ASSERT_FALSE(s.ok()) << c.mentions;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find(c.mentions), std::string::npos) << s.status();
  }
  KVCC_ASSERT_OK(Sampler::Create(Params(0.7, 40, 0.9, 1.1)).status());
}

TEST(SamplerTest, GreedyPicksTheFirstMaximum) {
  KVCC_ASSERT_OK_AND_ASSIGN(s, Sampler::Create(Params(0.0)));
  const float logits[5] = {0.1f, 2.0f, -1.0f, 2.0f, 1.9f};
  for (int i = 0; i < 3; ++i) EXPECT_EQ(*s.Sample(logits, 5, {}), 1);
  const float nan_logits[2] = {0.0f, NAN};
  EXPECT_FALSE(s.Sample(nan_logits, 2, {}).ok());
}

TEST(SamplerTest, SameSeedSameTokensDifferentSeedDifferentTokens) {
  std::vector<float> logits(64);
  for (int i = 0; i < 64; ++i) logits[i] = std::sin(i * 1.7f);
  auto run = [&](uint64_t seed) {
    Sampler s = *Sampler::Create(Params(1.0, 0, 1.0, 1.0, seed));
    std::vector<int32_t> out;
    for (int i = 0; i < 50; ++i) out.push_back(*s.Sample(logits.data(), 64, {}));
    return out;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

// Frequencies of 200k draws against the expected probabilities (5 sigma of a binomial).
void ExpectDraws(Sampler s, const std::vector<float>& logits, const std::vector<double>& want,
                 const std::vector<int32_t>& history = {}) {
  const int n = 200000;
  std::vector<int> count(logits.size());
  for (int i = 0; i < n; ++i) count[*s.Sample(logits.data(), logits.size(), history)]++;
  for (size_t v = 0; v < want.size(); ++v) {
    const double sigma = std::sqrt(n * want[v] * (1 - want[v])) + 1e-9;
    EXPECT_LE(std::fabs(count[v] - n * want[v]), 5 * sigma + (want[v] == 0 ? 0 : 1))
        << "token " << v << " drawn " << count[v] << " times, expected " << n * want[v];
  }
}

std::vector<double> Softmax(const std::vector<double>& x) {
  double m = *std::max_element(x.begin(), x.end()), z = 0;
  std::vector<double> p;
  for (double v : x) z += std::exp(v - m);
  for (double v : x) p.push_back(std::exp(v - m) / z);
  return p;
}

TEST(SamplerTest, TemperatureTopKTopPDistributions) {
  const std::vector<float> logits = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f};
  // Temperature 0.5 sharpens: softmax(logits / 0.5).
  std::vector<double> scaled;
  for (float l : logits) scaled.push_back(l / 0.5);
  ExpectDraws(*Sampler::Create(Params(0.5, 0, 1.0, 1.0, 7)), logits, Softmax(scaled));
  // Top-k 2: renormalized over the two best.
  std::vector<double> k2 = Softmax({2.0, 1.0});
  ExpectDraws(*Sampler::Create(Params(1.0, 2, 1.0, 1.0, 8)), logits, {k2[0], k2[1], 0, 0, 0});
  // Top-p 0.8: the smallest prefix reaching 0.8 of the mass.
  std::vector<double> full = Softmax({2.0, 1.0, 0.5, 0.0, -1.0});
  ASSERT_LT(full[0] + full[1], 0.8);
  ASSERT_GE(full[0] + full[1] + full[2], 0.8);
  const double z = full[0] + full[1] + full[2];
  ExpectDraws(*Sampler::Create(Params(1.0, 0, 0.8, 1.0, 9)), logits,
              {full[0] / z, full[1] / z, full[2] / z, 0, 0});
  KVCC_ASSERT_OK_AND_ASSIGN(s, Sampler::Create(Params(1.0, 0, 0.8)));
  std::vector<double> dist = s.Distribution(logits.data(), 5, {});
  EXPECT_NEAR(dist[2], full[2] / z, 1e-12);
  EXPECT_EQ(dist[3], 0.0);
}

TEST(SamplerTest, RepetitionPenaltyFollowsTransformers) {
  const std::vector<float> logits = {2.0f, -1.0f, 1.0f};
  KVCC_ASSERT_OK_AND_ASSIGN(s, Sampler::Create(Params(1.0, 0, 1.0, 2.0)));
  // Tokens 0 and 1 were seen (0 twice: penalized once): 2 -> 1, -1 -> -2.
  std::vector<double> dist = s.Distribution(logits.data(), 3, {0, 1, 0});
  std::vector<double> want = Softmax({1.0, -2.0, 1.0});
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(dist[i], want[i], 1e-12);
  // Greedy with a penalty picks the best penalized score (ties: lowest id).
  KVCC_ASSERT_OK_AND_ASSIGN(g, Sampler::Create(Params(0.0, 0, 1.0, 3.0)));
  EXPECT_EQ(*g.Sample(logits.data(), 3, {0}), 2);
  ExpectDraws(*Sampler::Create(Params(1.0, 0, 1.0, 2.0, 11)), logits, want, {0, 1});
}

}  // namespace
}  // namespace kvcc::runtime
