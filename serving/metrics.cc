#include "serving/metrics.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvcc::serving {
namespace {

void Bump(std::vector<std::pair<std::string, int64_t>>& counts, const std::string& key) {
  for (auto& [k, v] : counts) {
    if (k == key) {
      ++v;
      return;
    }
  }
  counts.push_back({key, 1});
}

std::string Header(const char* name, const char* type, const char* help) {
  return absl::StrCat("# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double value) {
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++counts_[i];
  sum_ += value;
  ++count_;
}

std::string Histogram::Render(const std::string& name) const {
  std::string out;
  int64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    absl::StrAppend(&out, name, "_bucket{le=\"", absl::StrFormat("%g", bounds_[i]), "\"} ",
                    cumulative, "\n");
  }
  absl::StrAppend(&out, name, "_bucket{le=\"+Inf\"} ", count_, "\n", name, "_sum ",
                  absl::StrFormat("%.6f", sum_), "\n", name, "_count ", count_, "\n");
  return out;
}

Metrics::Metrics()
    : ttft_({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5,
             10, 20, 40, 80}),
      itl_({0.001, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2,
            0.3, 0.4, 0.5, 0.75, 1, 2.5}),
      latency_({0.1, 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240}) {}

void Metrics::SetGauges(const GaugeValues& g) {
  std::lock_guard<std::mutex> lock(mu_);
  gauges_ = g;
}
void Metrics::SetQueued(int64_t queued) {
  std::lock_guard<std::mutex> lock(mu_);
  gauges_.queued_requests = queued;
}
void Metrics::AddPromptTokens(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  prompt_tokens_ += n;
}
void Metrics::AddGenerationTokens(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  generation_tokens_ += n;
}
void Metrics::CountPreempted() {
  std::lock_guard<std::mutex> lock(mu_);
  ++preemptions_;
}
void Metrics::CountFinished(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  Bump(finished_, reason);
}
void Metrics::CountRejected(int http_status) {
  std::lock_guard<std::mutex> lock(mu_);
  Bump(rejected_, absl::StrCat(http_status));
}
void Metrics::ObserveTtft(double s) {
  std::lock_guard<std::mutex> lock(mu_);
  ttft_.Observe(s);
}
void Metrics::ObserveItl(double s) {
  std::lock_guard<std::mutex> lock(mu_);
  itl_.Observe(s);
}
void Metrics::ObserveLatency(double s) {
  std::lock_guard<std::mutex> lock(mu_);
  latency_.Observe(s);
}

GaugeValues Metrics::gauges() const {
  std::lock_guard<std::mutex> lock(mu_);
  return gauges_;
}

std::string Metrics::Prometheus() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  auto gauge = [&](const char* name, const char* help, int64_t v) {
    absl::StrAppend(&out, Header(name, "gauge", help), name, " ", v, "\n");
  };
  gauge("kvcc_requests_running", "Requests being prefilled or decoded.", gauges_.running_requests);
  gauge("kvcc_requests_waiting", "Requests queued for admission.", gauges_.queued_requests);
  gauge("kvcc_kv_blocks_used", "KV-cache blocks held by requests.", gauges_.kv_blocks_used);
  gauge("kvcc_kv_blocks_free", "KV-cache blocks free.", gauges_.kv_blocks_free);
  absl::StrAppend(&out, Header("kvcc_prompt_tokens_total", "counter", "Prompt tokens prefilled."),
                  "kvcc_prompt_tokens_total ", prompt_tokens_, "\n");
  absl::StrAppend(&out,
                  Header("kvcc_generation_tokens_total", "counter", "Tokens generated."),
                  "kvcc_generation_tokens_total ", generation_tokens_, "\n");
  absl::StrAppend(&out,
                  Header("kvcc_preemptions_total", "counter",
                         "Running requests whose KV blocks were taken back (recomputed later)."),
                  "kvcc_preemptions_total ", preemptions_, "\n");
  absl::StrAppend(&out, Header("kvcc_requests_finished_total", "counter",
                               "Requests that ran, by how they ended."));
  for (const auto& [reason, n] : finished_) {
    absl::StrAppend(&out, "kvcc_requests_finished_total{reason=\"", reason, "\"} ", n, "\n");
  }
  absl::StrAppend(&out, Header("kvcc_requests_rejected_total", "counter",
                               "Requests refused before running, by HTTP status."));
  for (const auto& [status, n] : rejected_) {
    absl::StrAppend(&out, "kvcc_requests_rejected_total{status=\"", status, "\"} ", n, "\n");
  }
  absl::StrAppend(&out,
                  Header("kvcc_time_to_first_token_seconds", "histogram",
                         "From arrival to the first generated token."),
                  ttft_.Render("kvcc_time_to_first_token_seconds"),
                  Header("kvcc_inter_token_latency_seconds", "histogram",
                         "Between consecutive tokens of one sequence."),
                  itl_.Render("kvcc_inter_token_latency_seconds"),
                  Header("kvcc_request_latency_seconds", "histogram",
                         "From arrival to the last token."),
                  latency_.Render("kvcc_request_latency_seconds"));
  return out;
}

}  // namespace kvcc::serving
