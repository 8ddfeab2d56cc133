// The server's counters, gauges and latency histograms, updated from the scheduler and the
// HTTP threads and rendered for GET /metrics in the Prometheus text format.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace kvcc::serving {

// Cumulative buckets with fixed upper bounds (seconds), as Prometheus histograms count.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);
  // The text lines of histogram `name` (without HELP/TYPE).
  std::string Render(const std::string& name) const;
  int64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<int64_t> counts_;  // per bucket, not cumulative; one more for +Inf
  double sum_ = 0;
  int64_t count_ = 0;
};

struct GaugeValues {
  int64_t running_requests = 0;
  int64_t queued_requests = 0;
  int64_t kv_blocks_used = 0;
  int64_t kv_blocks_free = 0;
};

class Metrics {
 public:
  Metrics();

  void SetGauges(const GaugeValues& g);
  void SetQueued(int64_t queued);
  void AddPromptTokens(int64_t n);
  void AddGenerationTokens(int64_t n);
  // A running request whose blocks were taken back to let others grow (recomputed later).
  void CountPreempted();
  // A request that ended: "stop", "length", "abort" or "cancelled".
  void CountFinished(const std::string& reason);
  // A request refused before it ran, by HTTP status.
  void CountRejected(int http_status);
  void ObserveTtft(double seconds);
  void ObserveItl(double seconds);
  void ObserveLatency(double seconds);

  GaugeValues gauges() const;
  std::string Prometheus() const;

 private:
  mutable std::mutex mu_;
  GaugeValues gauges_;
  int64_t prompt_tokens_ = 0, generation_tokens_ = 0, preemptions_ = 0;
  std::vector<std::pair<std::string, int64_t>> finished_, rejected_;
  Histogram ttft_, itl_, latency_;
};

}  // namespace kvcc::serving
