// serving::Metrics: the Prometheus text of gauges, counters and cumulative histograms.
#include "serving/metrics.h"

#include "gtest/gtest.h"

namespace kvcc::serving {
namespace {

TEST(MetricsTest, RendersGaugesCountersAndCumulativeBuckets) {
  Metrics m;
  m.SetGauges({3, 2, 10, 6});
  m.SetQueued(5);
  m.AddPromptTokens(7);
  m.AddGenerationTokens(4);
  m.CountFinished("completed");
  m.CountFinished("completed");
  m.CountRejected(429);
  m.ObserveTtft(0.003);
  m.ObserveTtft(0.05);
  m.ObserveTtft(100);
  const std::string t = m.Prometheus();
  for (const char* line :
       {"kvcc_requests_running 3\n", "kvcc_requests_waiting 5\n", "kvcc_kv_blocks_used 10\n",
        "kvcc_kv_blocks_free 6\n", "kvcc_prompt_tokens_total 7\n",
        "kvcc_generation_tokens_total 4\n", "kvcc_requests_finished_total{reason=\"completed\"} 2\n",
        "kvcc_requests_rejected_total{status=\"429\"} 1\n",
        "kvcc_time_to_first_token_seconds_bucket{le=\"0.001\"} 0\n",
        "kvcc_time_to_first_token_seconds_bucket{le=\"0.005\"} 1\n",
        "kvcc_time_to_first_token_seconds_bucket{le=\"0.06\"} 2\n",
        "kvcc_time_to_first_token_seconds_bucket{le=\"80\"} 2\n",
        "kvcc_time_to_first_token_seconds_bucket{le=\"+Inf\"} 3\n",
        "kvcc_time_to_first_token_seconds_count 3\n", "# TYPE kvcc_inter_token_latency_seconds histogram\n"}) {
    EXPECT_NE(t.find(line), std::string::npos) << line << " in\n" << t;
  }
}

TEST(MetricsTest, BucketBoundsAreInclusive) {
  Histogram h({1, 2});
  h.Observe(1);
  h.Observe(2);
  h.Observe(2.5);
  const std::string t = h.Render("x");
  EXPECT_NE(t.find("x_bucket{le=\"1\"} 1\n"), std::string::npos) << t;
  EXPECT_NE(t.find("x_bucket{le=\"2\"} 2\n"), std::string::npos) << t;
  EXPECT_NE(t.find("x_bucket{le=\"+Inf\"} 3\n"), std::string::npos) << t;
  EXPECT_NE(t.find("x_sum 5.500000\n"), std::string::npos) << t;
}

}  // namespace
}  // namespace kvcc::serving
