// `kvcc bench cpu`: prefill and decode throughput of the CPU backend (tokens/s), for model
// directories or for config.json files synthesized on the fly with seeded random weights.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "ir/status_macros.h"
#include "pipeline/model_opener.h"
#include "runtime/cpu_backend.h"
#include "runtime/engine.h"
#include "testing/synth.h"
#include "tools/bench_registry.h"
#include "tools/cli_support.h"
#include "tools/flags.h"
#include "tools/text_model.h"

ABSL_FLAG(int32_t, prompt_tokens, 128, "bench cpu: prompt length for the prefill measurement");
ABSL_FLAG(int32_t, decode_tokens, 64, "bench cpu: decode steps per measurement");
ABSL_FLAG(int32_t, batch, 8, "bench cpu: sessions decoded together in the batched measurement");
ABSL_FLAG(int32_t, cpu_threads, 0, "CPU backend threads (0 = every core)");

namespace kvcc::tools {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// A model directory, or a config .json synthesized (seed --seed) into a temporary directory.
absl::StatusOr<std::string> ModelDir(const std::string& arg) {
  if (arg.size() < 5 || arg.substr(arg.size() - 5) != ".json") return arg;
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("kvcc-bench-" + std::filesystem::path(arg).stem().string()))
                              .string();
  testing::SynthOptions o;
  o.seed = static_cast<uint64_t>(absl::GetFlag(FLAGS_seed));
  KVCC_ASSIGN_OR_RETURN(auto r, testing::SynthesizeCheckpoint(arg, dir, o));
  return dir;
}

int BenchOne(const std::string& arg) {
  auto dir = ModelDir(arg);
  if (!dir.ok()) return Fail("bench cpu", dir.status());
  // The graph generate runs: lowered with the flags' cache scheme and the execution fusions.
  auto module = pipeline::LoadForExecution(*dir, LowerOptionsFromFlags());
  if (!module.ok()) return Fail("bench cpu", module.status());
  const ir::ModelConfig config = (*module)->config;
  const int prompt = absl::GetFlag(FLAGS_prompt_tokens);
  const int decode = absl::GetFlag(FLAGS_decode_tokens);
  const int batch = absl::GetFlag(FLAGS_batch);
  if (prompt <= 0 || decode <= 0 || batch <= 0) {
    return Fail("bench cpu", absl::InvalidArgumentError(
                                 "--prompt-tokens, --decode-tokens and --batch must be > 0"),
                2);
  }
  pipeline::EngineConfig engine_config;
  engine_config.device = "cpu";
  engine_config.threads = absl::GetFlag(FLAGS_cpu_threads);
  engine_config.max_len = prompt + decode;
  engine_config.cache_tokens = int64_t{batch + 1} * (prompt + decode);
  auto engine = pipeline::StartEngine(std::shared_ptr<const ir::Module>(std::move(*module)),
                                      engine_config);
  if (!engine.ok()) return Fail("bench cpu", engine.status());
  runtime::Engine& e = **engine;
  const int threads = static_cast<runtime::CpuBackend&>(e.backend()).num_threads();
  std::mt19937 rng(static_cast<uint32_t>(absl::GetFlag(FLAGS_seed)));
  std::vector<int32_t> ids(prompt);
  for (int32_t& id : ids) id = static_cast<int32_t>(rng() % e.vocab_size());
  auto check = [](const absl::Status& s) {
    if (!s.ok()) Fail("bench cpu", s);
    return s.ok();
  };
  auto argmax = [](const std::vector<float>& l) {
    return static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
  };

  // Prefill: best of three (a warm-up run first).
  double prefill_best = 1e30;
  std::vector<float> last;
  for (int rep = 0; rep < 4; ++rep) {
    auto s = e.CreateSession();
    if (!check(s.status())) return 1;
    const auto t0 = Clock::now();
    auto l = e.Prefill(*s, ids);
    const double dt = Seconds(t0);
    if (!check(l.status())) return 1;
    last = *l;
    if (rep > 0) prefill_best = std::min(prefill_best, dt);
    if (rep < 3 && !check(e.CloseSession(*s))) return 1;
    if (rep == 3) {
      // Decode, batch 1, continuing this session greedily.
      int32_t tok = argmax(last);
      const auto t1 = Clock::now();
      for (int i = 0; i < decode; ++i) {
        auto d = e.Decode({{*s, tok}});
        if (!check(d.status())) return 1;
        tok = argmax((*d)[0]);
      }
      const double decode_s = Seconds(t1);
      if (!check(e.CloseSession(*s))) return 1;
      // Batched decode over `batch` sessions.
      std::vector<std::pair<int64_t, int32_t>> step;
      for (int b = 0; b < batch; ++b) {
        auto sb = e.CreateSession();
        if (!check(sb.status())) return 1;
        auto lb = e.Prefill(*sb, ids);
        if (!check(lb.status())) return 1;
        step.push_back({*sb, argmax(*lb)});
      }
      const auto t2 = Clock::now();
      for (int i = 0; i < decode; ++i) {
        auto d = e.Decode(step);
        if (!check(d.status())) return 1;
        for (int b = 0; b < batch; ++b) step[b].second = argmax((*d)[b]);
      }
      const double batched_s = Seconds(t2);
      std::printf("| %s | %s | %.2fM | %d | %.0f | %.1f | %.1f |\n",
                  std::filesystem::path(arg).filename().string().c_str(),
                  std::string(ir::DTypeName(config.weight_dtype)).c_str(),
                  config.NumParameters() / 1e6, threads, prompt / prefill_best, decode / decode_s,
                  static_cast<double>(batch) * decode / batched_s);
    }
  }
  return 0;
}

int RunBenchCpu(const std::vector<std::string>& args) {
  std::vector<std::string> models = args;
  if (models.empty()) {
    models = {"models/stories260K", "models/configs/llama-hd64-mha.json",
              "models/configs/llama-hd128-gqa.json"};
  }
  std::printf("prompt %d tokens, %d decode steps, batched decode with %d sessions\n\n",
              absl::GetFlag(FLAGS_prompt_tokens), absl::GetFlag(FLAGS_decode_tokens),
              absl::GetFlag(FLAGS_batch));
  std::printf("| model | weights | params | threads | prefill tok/s | decode tok/s (batch 1) | "
              "decode tok/s (batch %d) |\n|---|---|---|---|---|---|---|\n",
              absl::GetFlag(FLAGS_batch));
  int rc = 0;
  for (const std::string& m : models) rc |= BenchOne(m);
  return rc;
}

}  // namespace
}  // namespace kvcc::tools

KVCC_BENCH(cpu,
           "cpu [MODEL_DIR|CONFIG.json ...] [--prompt-tokens N] [--decode-tokens N] [--batch N] "
           "[--cpu-threads N] [--seed N]",
           kvcc::tools::RunBenchCpu);
