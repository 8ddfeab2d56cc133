// `kvcc bench serve`: a load generator for an OpenAI-compatible server (kvcc serve, or any
// other) with the definitions of `vllm bench serve`: Poisson arrivals at --request-rate capped
// by --max-concurrency, a random dataset of token-id prompts (--random-input-len,
// --random-output-len, --random-range-ratio, --ignore-eos) or prompts from a text file (one per
// line); streams every request and reports request and token throughput, TTFT, TPOT =
// (latency - TTFT) / (output tokens - 1), ITL (between streamed chunks) and end-to-end latency
// (mean, median, p99), and goodput for --goodput ttft:MS tpot:MS e2el:MS.
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "ir/json_reader.h"
#include "tools/bench_registry.h"
#include "tools/cli_support.h"
#include "tools/flags.h"

ABSL_FLAG(std::string, base_url, "http://127.0.0.1:23333", "bench serve: the server");
ABSL_FLAG(std::string, endpoint, "/v1/completions", "bench serve: the completions route");
ABSL_FLAG(std::string, model, "", "bench serve: the served model name (required)");
ABSL_FLAG(std::string, api_key, "", "bench serve: sent as Authorization: Bearer KEY");
ABSL_FLAG(int32_t, num_prompts, 100, "bench serve: requests to send");
ABSL_FLAG(double, request_rate, std::numeric_limits<double>::infinity(),
          "bench serve: Poisson arrival rate in requests/s (inf: all at once)");
ABSL_FLAG(int32_t, max_concurrency, 0, "bench serve: requests in flight at most (0: no cap)");
ABSL_FLAG(std::string, dataset_path, "",
          "bench serve: a text file of prompts, one per line (default: the random dataset)");
ABSL_FLAG(int32_t, random_input_len, 1024, "bench serve: prompt tokens of the random dataset");
ABSL_FLAG(int32_t, random_output_len, 128, "bench serve: tokens to generate per request");
ABSL_FLAG(double, random_range_ratio, 0.0,
          "bench serve: lengths drawn from [len * (1 - r), len * (1 + r)]");
ABSL_FLAG(int32_t, random_vocab, 32000, "bench serve: random prompt ids lie in [3, this)");
ABSL_FLAG(bool, ignore_eos, false, "bench serve: ask the server to ignore EOS");
ABSL_FLAG(std::string, goodput, "", "bench serve: SLOs, e.g. \"ttft:2000 tpot:50 e2el:10000\" (ms)");
ABSL_FLAG(std::string, result_json, "", "bench serve: also write the results to this JSON file");

namespace kvcc::tools {
namespace {

using Clock = std::chrono::steady_clock;

struct Prompt {
  ir::Json prompt;  // a string or a list of token ids
  int output_len = 0;
};

struct Outcome {
  bool ok = false;
  std::string error;
  int64_t prompt_tokens = 0, output_tokens = 0;
  double ttft = 0, latency = 0;
  std::vector<double> itl;
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

absl::StatusOr<std::vector<Prompt>> MakePrompts(std::mt19937_64& rng) {
  const int n = absl::GetFlag(FLAGS_num_prompts);
  const int out_len = absl::GetFlag(FLAGS_random_output_len);
  const double ratio = absl::GetFlag(FLAGS_random_range_ratio);
  if (n <= 0 || out_len <= 0 || ratio < 0 || ratio >= 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--num-prompts ", n, " and --random-output-len ", out_len,
        " must be positive and --random-range-ratio ", ratio, " in [0, 1)"));
  }
  auto draw = [&](int len) {
    std::uniform_int_distribution<int> d(std::max(1, static_cast<int>(len * (1 - ratio))),
                                         std::max(1, static_cast<int>(len * (1 + ratio))));
    return d(rng);
  };
  std::vector<Prompt> prompts;
  const std::string path = absl::GetFlag(FLAGS_dataset_path);
  if (!path.empty()) {
    std::ifstream in(path);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read --dataset-path ", path));
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) {
      if (!absl::StripAsciiWhitespace(line).empty()) lines.push_back(line);
    }
    if (lines.empty()) return absl::InvalidArgumentError(absl::StrCat(path, " has no prompts"));
    for (int i = 0; i < n; ++i) prompts.push_back({lines[i % lines.size()], draw(out_len)});
    return prompts;
  }
  const int in_len = absl::GetFlag(FLAGS_random_input_len);
  const int vocab = absl::GetFlag(FLAGS_random_vocab);
  if (in_len <= 0 || vocab <= 3) {
    return absl::InvalidArgumentError(absl::StrCat("--random-input-len ", in_len,
                                                   " must be positive and --random-vocab ",
                                                   vocab, " above 3"));
  }
  std::uniform_int_distribution<int> id(3, vocab - 1);
  for (int i = 0; i < n; ++i) {
    ir::Json ids = ir::Json::array();
    for (int t = draw(in_len); t > 0; --t) ids.push_back(id(rng));
    prompts.push_back({ids, draw(out_len)});
  }
  return prompts;
}

// One streamed request; token arrival times come from the SSE chunks.
Outcome Send(const std::string& base_url, const Prompt& p) {
  Outcome o;
  ir::Json body = {{"model", absl::GetFlag(FLAGS_model)},
                   {"prompt", p.prompt},
                   {"max_tokens", p.output_len},
                   {"temperature", 0},
                   {"stream", true},
                   {"stream_options", {{"include_usage", true}}},
                   {"ignore_eos", absl::GetFlag(FLAGS_ignore_eos)}};
  httplib::Client cli(base_url);
  cli.set_read_timeout(std::chrono::seconds(3600));
  httplib::Request req;
  req.method = "POST";
  req.path = absl::GetFlag(FLAGS_endpoint);
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  if (!absl::GetFlag(FLAGS_api_key).empty()) {
    req.set_header("Authorization", "Bearer " + absl::GetFlag(FLAGS_api_key));
  }
  const Clock::time_point start = Clock::now();
  Clock::time_point last = start;
  bool first = true;
  std::string buffer;
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    buffer.append(data, len);
    for (size_t end; (end = buffer.find("\n\n")) != std::string::npos;) {
      const std::string chunk = buffer.substr(0, end);
      buffer.erase(0, end + 2);
      absl::string_view event = chunk;
      if (!absl::ConsumePrefix(&event, "data: ") || event == "[DONE]") continue;
      auto j = ir::ParseJson(event, "stream chunk");
      if (!j.ok() || !j->is_object()) continue;
      if (j->contains("error")) {
        o.error = ir::ShowJson((*j)["error"]);
        continue;
      }
      if (j->contains("usage") && (*j)["usage"].is_object()) {
        o.prompt_tokens = (*j)["usage"].value("prompt_tokens", int64_t{0});
        o.output_tokens = (*j)["usage"].value("completion_tokens", int64_t{0});
      }
      if (!j->contains("choices") || !(*j)["choices"].is_array() || (*j)["choices"].empty()) {
        continue;
      }
      const Clock::time_point now = Clock::now();
      if (first) {
        o.ttft = Seconds(now - start);
        first = false;
      } else {
        o.itl.push_back(Seconds(now - last));
      }
      last = now;
    }
    return true;
  };
  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  const bool sent = cli.send(req, res, error);
  o.latency = Seconds(Clock::now() - start);
  if (!sent) {
    o.error = absl::StrCat("HTTP error ", httplib::to_string(error));
  } else if (res.status != 200) {
    o.error = absl::StrCat("HTTP ", res.status, " ", res.body);
  }
  o.ok = o.error.empty() && !first;
  return o;
}

double Mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / v.size();
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  // Linear interpolation, as numpy.percentile (what vllm bench serve uses).
  const double rank = p / 100 * (v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(v.size() - 1, lo + 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - lo);
}

absl::StatusOr<std::map<std::string, double>> ParseGoodput(const std::string& text) {
  std::map<std::string, double> slo;
  for (absl::string_view part : absl::StrSplit(text, ' ', absl::SkipWhitespace())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(part, absl::MaxSplits(':', 1));
    double ms = 0;
    if ((kv.first != "ttft" && kv.first != "tpot" && kv.first != "e2el") ||
        !absl::SimpleAtod(kv.second, &ms) || ms <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--goodput '", text, "': expected ttft:MS, tpot:MS and/or e2el:MS with positive MS"));
    }
    slo[kv.first] = ms / 1000.0;
  }
  return slo;
}

int RunBenchServe(const std::vector<std::string>& args) {
  if (!args.empty() || absl::GetFlag(FLAGS_model).empty()) {
    std::fprintf(stderr,
                 "usage: kvcc bench serve --model NAME [--base-url URL] [--num-prompts N] "
                 "[--request-rate R] [--max-concurrency C] [--random-input-len I "
                 "--random-output-len O | --dataset-path FILE] [--ignore-eos] "
                 "[--goodput \"ttft:MS tpot:MS\"]\n");
    return 2;
  }
  auto slo = ParseGoodput(absl::GetFlag(FLAGS_goodput));
  if (!slo.ok()) return Fail("bench serve", slo.status());
  std::mt19937_64 rng(static_cast<uint64_t>(absl::GetFlag(FLAGS_seed)));
  auto prompts = MakePrompts(rng);
  if (!prompts.ok()) return Fail("bench serve", prompts.status());
  const std::string base_url = absl::GetFlag(FLAGS_base_url);
  const double rate = absl::GetFlag(FLAGS_request_rate);
  const int cap = absl::GetFlag(FLAGS_max_concurrency);
  if (!(rate > 0)) {
    return Fail("bench serve", absl::InvalidArgumentError("--request-rate must be positive"));
  }

  std::vector<Outcome> outcomes(prompts->size());
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  std::vector<std::thread> threads;
  std::exponential_distribution<double> gap(std::isinf(rate) ? 1.0 : rate);
  const Clock::time_point start = Clock::now();
  Clock::time_point next = start;
  for (size_t i = 0; i < prompts->size(); ++i) {
    std::this_thread::sleep_until(next);
    if (!std::isinf(rate)) {
      next += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(rng)));
    }
    if (cap > 0) {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return in_flight < cap; });
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      ++in_flight;
    }
    threads.emplace_back([&, i] {
      outcomes[i] = Send(base_url, (*prompts)[i]);
      {
        std::lock_guard<std::mutex> lock(mu);
        --in_flight;
      }
      cv.notify_all();
    });
  }
  for (std::thread& t : threads) t.join();
  const double duration = Seconds(Clock::now() - start);

  std::vector<double> ttft, tpot, itl, e2el;
  int64_t completed = 0, input_tokens = 0, output_tokens = 0, good = 0;
  std::string first_error;
  for (const Outcome& o : outcomes) {
    if (!o.ok) {
      if (first_error.empty()) first_error = o.error;
      continue;
    }
    ++completed;
    input_tokens += o.prompt_tokens;
    output_tokens += o.output_tokens;
    ttft.push_back(o.ttft);
    e2el.push_back(o.latency);
    itl.insert(itl.end(), o.itl.begin(), o.itl.end());
    const double t = o.output_tokens > 1 ? (o.latency - o.ttft) / (o.output_tokens - 1) : 0;
    if (o.output_tokens > 1) tpot.push_back(t);
    bool meets = true;
    if (slo->count("ttft")) meets = meets && o.ttft <= slo->at("ttft");
    if (slo->count("tpot")) meets = meets && t <= slo->at("tpot");
    if (slo->count("e2el")) meets = meets && o.latency <= slo->at("e2el");
    good += meets;
  }
  const int64_t failed = static_cast<int64_t>(outcomes.size()) - completed;
  std::printf("============ Serving Benchmark Result ============\n");
  std::printf("%-40s %12lld\n", "Successful requests:", static_cast<long long>(completed));
  std::printf("%-40s %12lld\n", "Failed requests:", static_cast<long long>(failed));
  if (cap > 0) std::printf("%-40s %12d\n", "Maximum request concurrency:", cap);
  std::printf("%-40s %12.2f\n", "Benchmark duration (s):", duration);
  std::printf("%-40s %12lld\n", "Total input tokens:", static_cast<long long>(input_tokens));
  std::printf("%-40s %12lld\n", "Total generated tokens:", static_cast<long long>(output_tokens));
  std::printf("%-40s %12.2f\n", "Request throughput (req/s):", completed / duration);
  if (!slo->empty()) std::printf("%-40s %12.2f\n", "Request goodput (req/s):", good / duration);
  std::printf("%-40s %12.2f\n", "Output token throughput (tok/s):", output_tokens / duration);
  std::printf("%-40s %12.2f\n", "Total Token throughput (tok/s):",
              (input_tokens + output_tokens) / duration);
  ir::Json result = {{"duration", duration}, {"completed", completed}, {"failed", failed},
                     {"total_input_tokens", input_tokens}, {"total_output_tokens", output_tokens},
                     {"request_throughput", completed / duration},
                     {"output_throughput", output_tokens / duration},
                     {"total_token_throughput", (input_tokens + output_tokens) / duration}};
  if (!slo->empty()) result["request_goodput"] = good / duration;
  for (const auto& [name, title, values] :
       std::vector<std::tuple<std::string, std::string, const std::vector<double>*>>{
           {"ttft", "Time to First Token", &ttft},
           {"tpot", "Time per Output Token (excl. 1st token)", &tpot},
           {"itl", "Inter-token Latency", &itl},
           {"e2el", "End-to-end Latency", &e2el}}) {
    std::printf("%s\n", absl::StrCat("---------------", title, "---------------").c_str());
    const double mean = Mean(*values) * 1e3, median = Percentile(*values, 50) * 1e3,
                 p99 = Percentile(*values, 99) * 1e3;
    std::printf("%-40s %12.2f\n", absl::StrCat("Mean ", name, " (ms):").c_str(), mean);
    std::printf("%-40s %12.2f\n", absl::StrCat("Median ", name, " (ms):").c_str(), median);
    std::printf("%-40s %12.2f\n", absl::StrCat("P99 ", name, " (ms):").c_str(), p99);
    result[absl::StrCat("mean_", name, "_ms")] = mean;
    result[absl::StrCat("median_", name, "_ms")] = median;
    result[absl::StrCat("p99_", name, "_ms")] = p99;
  }
  std::printf("==================================================\n");
  if (!first_error.empty()) std::fprintf(stderr, "kvcc bench serve: first failure: %s\n", first_error.c_str());
  const std::string json_path = absl::GetFlag(FLAGS_result_json);
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << result.dump(2) << "\n";
    if (!out) return Fail("bench serve", absl::InternalError(absl::StrCat("cannot write ", json_path)));
  }
  return completed > 0 ? 0 : 1;
}

}  // namespace
}  // namespace kvcc::tools

KVCC_BENCH(serve,
           "serve --model NAME [--base-url URL] [--num-prompts N] [--request-rate R] "
           "[--max-concurrency C] [--random-input-len I --random-output-len O] [--goodput ...]",
           kvcc::tools::RunBenchServe);
