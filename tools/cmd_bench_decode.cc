// `kvcc bench decode`: decode step time against the memory-bandwidth floor. For a config.json
// (no checkpoint needed; tools/bench_model.h builds the model at its real shapes on the GPU)
// and each KV cache kind, it fills the cache of the largest batch to --context tokens per
// session, then times real decode steps (the step generate, chat and serve run: logits of the
// new tokens on the device, greedy pick there, only the ids back) at every batch, and reports
// the bytes a step must read (the weights, less the untouched rows of an untied embedding
// table, plus the KV attended), the floor those bytes take at the read bandwidth a probe
// measures in the same run, and the step's share of that floor.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "codegen/ops_kernels.h"
#include "ir/file_read.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"
#include "passes/execution_fusions.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_memory.h"
#include "runtime/cuda/decode_graph.h"
#include "runtime/cuda/gemm_autotune.h"
#include "runtime/cuda/gemv_choice.h"
#include "runtime/cuda/kernel_tuning.h"
#include "runtime/executor.h"
#include "tools/bench_model.h"
#include "tools/bench_registry.h"
#include "tools/flags.h"

ABSL_DECLARE_FLAG(std::string, config);
ABSL_DECLARE_FLAG(std::string, batches);
ABSL_DECLARE_FLAG(int32_t, decode_steps);
ABSL_FLAG(int64_t, context, 2048, "bench decode: cached tokens per session when a step runs");
ABSL_FLAG(std::string, caches, "f16,i8,i4", "bench decode: comma-separated KV cache kinds");
ABSL_FLAG(std::string, decode_pdl, "",
          "bench decode: comma-separated programmatic-launch settings to time each row with: 1 "
          "(sm_90+), 0 (ordinary launches); empty: the backend's default (KVCC_PDL)");
ABSL_FLAG(std::string, gemv_l2, "",
          "bench decode: comma-separated L2 prefetch depths (chunks per warp) of the decode GEMV "
          "to time each row with; empty: the backend's default");
ABSL_FLAG(std::string, decode_gemv, "rule",
          "bench decode: comma-separated linear paths to time each row with: rule (the "
          "default), off (cuBLASLt only), or a GEMV variant index (that variant wherever it "
          "takes the call, e.g. 0 puts gate/up and the LM head on the GEMV too)");
ABSL_FLAG(std::string, tuning, "",
          "bench decode: a tuning.json (an autotuned artifact's); each cache kind then runs with "
          "the heuristics and with it, and a table compares the two per batch");

namespace kvcc::tools {
namespace {

using Clock = std::chrono::steady_clock;

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "kvcc bench decode: %s\n", std::string(s.message()).c_str());
  return 1;
}

// Read bandwidth in bytes/s: a 4 GiB buffer (less on small devices) read ten times.
absl::StatusOr<double> ProbeReadBandwidth(runtime::CudaBackend* backend) {
  KVCC_ASSIGN_OR_RETURN(auto mem, backend->context()->MemoryInfo());
  const int64_t bytes = std::min<int64_t>(int64_t{4} << 30, mem.free_bytes / 4) / 16 * 16;
  KVCC_ASSIGN_OR_RETURN(auto buf, runtime::AllocateDeviceTensor(backend->context(), ir::DType::kU8,
                                                                {bytes}, true));
  for (int i = 0; i < 3; ++i) KVCC_RETURN_IF_ERROR(backend->ReadAll(buf));
  KVCC_RETURN_IF_ERROR(backend->Synchronize());
  constexpr int kReps = 10;
  const auto t0 = Clock::now();
  for (int i = 0; i < kReps; ++i) KVCC_RETURN_IF_ERROR(backend->ReadAll(buf));
  KVCC_RETURN_IF_ERROR(backend->Synchronize());
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  return static_cast<double>(bytes) * kReps / s;
}

// Weight bytes a decode step of `batch` tokens reads: all of them, except the rows an untied
// embedding table does not look up.
int64_t WeightBytesRead(const ir::Module& m, int64_t all, int64_t batch) {
  for (const auto& n : m.graph.nodes()) {
    if (n->op != ir::op::kEmbedding || n->inputs.size() < 2 || n->input(1) == nullptr) continue;
    const ir::Value* table = n->input(1);
    if (table->users.size() != 1 || table->type.shape.size() != 2) continue;  // tied: all read
    const int64_t bytes = table->type.NumBytes();
    return all - bytes + bytes / table->type.shape[0] * batch;
  }
  return all;
}

// One timed launch setting of a row: programmatic launch on or off, the GEMV's L2 prefetch
// depth (-1: the backend's default).
struct LaunchSetting {
  int pdl = -1;  // 1 on, 0 off, -1 the backend's default
  int l2 = -1;
  int gemv = runtime::kGemvByRule;
};

struct Row {
  std::string cache;
  int64_t batch = 0;
  LaunchSetting launch;
  double step_ms = 0;
  int64_t bytes = 0;
};

absl::StatusOr<std::vector<Row>> MeasureCache(const std::string& dir,
                                              const testing::SynthPlan& plan,
                                              const std::string& kind,
                                              const std::vector<int64_t>& batches,
                                              int64_t context, int steps, uint64_t seed,
                                              double* bandwidth,
                                              std::shared_ptr<const runtime::KernelTuning> tuning,
                                              const std::vector<LaunchSetting>& settings) {
  KVCC_ASSIGN_OR_RETURN(auto module, LoadBenchModule(dir, kind));
  // The graph `kvcc generate` runs: q/k/v and gate/up merged, residual adds fused with the norms.
  KVCC_RETURN_IF_ERROR(passes::ApplyExecutionFusions(*module));
  runtime::CudaKernelSource source;
  source.tuning = std::move(tuning);
  if (source.tuning != nullptr) {
    // Say how much of this model's GEMM shapes the given tuning reaches.
    const std::vector<runtime::GemmShape> shapes = runtime::PlanGemmShapes(*module);
    int covered = 0;
    for (const runtime::GemmShape& g : shapes) {
      for (const runtime::GemmTuning& t : source.tuning->gemm) {
        if (t.n == g.n && t.k == g.k && t.dtype == g.dtype) {
          ++covered;
          break;
        }
      }
    }
    std::printf("%6s tuning covers %d of this model's %zu GEMM weight shapes\n", kind.c_str(),
                covered, shapes.size());
  }
  KVCC_ASSIGN_OR_RETURN(auto backend, runtime::CudaBackend::Create(0, std::move(source)));
  backend->SetHalfActivations(runtime::kModelActivationDType == ir::DType::kF16);
  KVCC_RETURN_IF_ERROR(AdoptRandomWeights(*module, plan, seed, backend.get()));
  KVCC_ASSIGN_OR_RETURN(auto exec, runtime::Executor::Create(module.get(), backend.get()));
  if (*bandwidth <= 0) {
    KVCC_ASSIGN_OR_RETURN(*bandwidth, ProbeReadBandwidth(backend.get()));
  }
  const int64_t max_batch = *std::max_element(batches.begin(), batches.end());
  // Room for the timed steps beyond `context` (the last step attends over context + steps).
  const int64_t max_len = context + steps + 2;
  const int64_t blocks = max_batch * ((max_len + kBenchBlockSize - 1) / kBenchBlockSize);
  KVCC_ASSIGN_OR_RETURN(auto spec,
                        runtime::KvCacheSpecFromModule(*module, kBenchBlockSize, blocks));
  KVCC_ASSIGN_OR_RETURN(auto cache, backend->CreateKvCache(spec));
  KVCC_RETURN_IF_ERROR(
      FillBenchCache(backend.get(), spec, max_batch, max_len, context, seed, cache.get()));
  const double kv_token_bytes = static_cast<double>(spec.layout.TotalBytes()) /
                                static_cast<double>(spec.layout.num_blocks * kBenchBlockSize);
  const int64_t vocab = exec->vocab_size();
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::vector<Row> rows;
  for (int64_t batch : batches) {
    for (const LaunchSetting& setting : settings) {
      if (setting.pdl >= 0) backend->set_programmatic_launch(setting.pdl == 1);
      if (setting.l2 >= 0) backend->set_gemv_l2_prefetch(setting.l2);
      backend->set_gemv_choice(setting.gemv);
      // Two steps at the last and first timed positions warm up (kernel loading, the block
      // cache, the CUDA graphs of the timed context bands), then `steps` timed ones write
      // positions context.. (the same positions at every batch and setting).
      double total = 0;
      int64_t attended = 0;
      for (int i = -2; i < steps; ++i) {
        runtime::StepBatch step;
        std::vector<int32_t> ids;
        std::vector<runtime::SampleRow> picks(batch);
        for (int64_t s = 0; s < batch; ++s) {
          step.sessions.push_back(s);
          step.positions.push_back(static_cast<int32_t>(
              i >= 0 ? context + i : i == -2 ? context + steps - 1 : context));
          ids.push_back(static_cast<int32_t>(rng() % vocab));
        }
        step.ComputeSeqLens();
        const auto t0 = Clock::now();
        KVCC_ASSIGN_OR_RETURN(auto logits, exec->RunOnDevice(ids, step, cache.get()));
        KVCC_RETURN_IF_ERROR(backend->SampleRows(logits, picks).status());
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        if (i >= 0) {
          total += ms;
          attended += batch * (context + i + 1);
        }
      }
      Row r;
      r.cache = kind;
      r.batch = batch;
      r.launch = setting;
      r.step_ms = total / steps;
      r.bytes = WeightBytesRead(*module, backend->weight_bytes(), batch) +
                static_cast<int64_t>(kv_token_bytes * static_cast<double>(attended) / steps);
      rows.push_back(r);
      const std::string l2 = setting.l2 < 0 ? "-" : absl::StrCat(setting.l2);
      const std::string gemv = setting.gemv == runtime::kGemvByRule ? "rule"
                               : setting.gemv == runtime::kGemvOff  ? "off"
                                                                    : absl::StrCat(setting.gemv);
      std::printf("%6s %6lld %4d %4s %5s %10.3f %12.0f %12.1f %10.3f %8.1f%%\n", kind.c_str(),
                  static_cast<long long>(batch), backend->programmatic_launch() ? 1 : 0,
                  l2.c_str(), gemv.c_str(), r.step_ms, 1e3 * batch / r.step_ms,
                  r.bytes / 1048576.0, r.bytes / *bandwidth * 1e3,
                  100.0 * (r.bytes / *bandwidth * 1e3) / r.step_ms);
      std::fflush(stdout);
    }
  }
  if (auto* graphs = dynamic_cast<runtime::CudaDecodeGraphs*>(backend->decode_graphs());
      graphs != nullptr) {
    const auto st = graphs->stats();
    std::printf("%6s cuda graphs: %lld captured (%lld nodes in the last), %lld replays, %lld eager "
                "steps%s%s\n",
                kind.c_str(), static_cast<long long>(st.captures),
                static_cast<long long>(st.last_nodes), static_cast<long long>(st.replays),
                static_cast<long long>(st.declined),
                graphs->disabled().ok() ? "" : "; disabled: ",
                std::string(graphs->disabled().message()).c_str());
  }
  return rows;
}

int BenchDecode(const std::vector<std::string>& args) {
  std::string config = absl::GetFlag(FLAGS_config);
  if (config.empty() && args.size() == 1) config = args[0];
  if (config.empty() || args.size() > 1) {
    std::fprintf(stderr,
                 "usage: kvcc bench decode --config CONFIG.json [--batches 1,8,32,64] "
                 "[--context 2048] [--caches f16,i8,i4] [--decode-steps 8] [--tuning FILE] "
                 "[--w4-group-size 128] [--decode-pdl 1,0] [--gemv-l2 0,8] "
                 "[--decode-gemv rule,off,0]\n");
    return 2;
  }
  std::vector<int64_t> batches;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_batches), ',', absl::SkipEmpty())) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v <= 0) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "--batches '", absl::GetFlag(FLAGS_batches), "' is not a list of positive integers")));
    }
    batches.push_back(v);
  }
  std::vector<std::string> caches = absl::StrSplit(absl::GetFlag(FLAGS_caches), ',', absl::SkipEmpty());
  const int64_t context = absl::GetFlag(FLAGS_context);
  const int steps = absl::GetFlag(FLAGS_decode_steps);
  if (batches.empty() || caches.empty() || context < 2 || steps < 1) {
    return Fail(absl::InvalidArgumentError(
        "--batches and --caches must be non-empty, --context >= 2 and --decode-steps >= 1"));
  }
  if (!runtime::CudaDeviceAvailable()) {
    return Fail(absl::FailedPreconditionError("bench decode times GPU steps; no GPU found"));
  }
  const int64_t w4_group_size = absl::GetFlag(FLAGS_w4_group_size);
  const std::string dir = BenchCheckpointDir("decode", config, w4_group_size);
  auto plan = WriteShapeOnlyCheckpoint(config, dir, w4_group_size);
  if (!plan.ok()) return Fail(plan.status());
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, 0);
  const char* graphs_env = std::getenv("KVCC_CUDA_GRAPHS");
  const bool graphs = graphs_env == nullptr || std::string(graphs_env) != "0";
  std::printf("kvcc bench decode: %s%s on %s, context %lld, %d timed steps per row, block size %d, "
              "CUDA graphs %s\n"
              "floor = bytes read / read bandwidth of a probe in this run; %% = floor / step\n\n",
              config.c_str(), W4Label(w4_group_size).c_str(), prop.name,
              static_cast<long long>(context), steps, kBenchBlockSize,
              graphs ? "on (KVCC_CUDA_GRAPHS=0: off)" : "off");
  std::vector<LaunchSetting> settings;
  {
    std::vector<int> pdl, l2;
    for (absl::string_view part :
         absl::StrSplit(absl::GetFlag(FLAGS_decode_pdl), ',', absl::SkipEmpty())) {
      int v = 0;
      if (!absl::SimpleAtoi(part, &v) || (v != 0 && v != 1)) {
        return Fail(absl::InvalidArgumentError(absl::StrCat(
            "--decode-pdl '", absl::GetFlag(FLAGS_decode_pdl), "' is not a list of 0 and 1")));
      }
      pdl.push_back(v);
    }
    for (absl::string_view part :
         absl::StrSplit(absl::GetFlag(FLAGS_gemv_l2), ',', absl::SkipEmpty())) {
      int v = 0;
      if (!absl::SimpleAtoi(part, &v) || v < 0) {
        return Fail(absl::InvalidArgumentError(absl::StrCat(
            "--gemv-l2 '", absl::GetFlag(FLAGS_gemv_l2), "' is not a list of counts >= 0")));
      }
      l2.push_back(v);
    }
    std::vector<int> gemv;
    for (absl::string_view part :
         absl::StrSplit(absl::GetFlag(FLAGS_decode_gemv), ',', absl::SkipEmpty())) {
      int v = 0;
      if (part == "rule") {
        v = runtime::kGemvByRule;
      } else if (part == "off") {
        v = runtime::kGemvOff;
      } else if (!absl::SimpleAtoi(part, &v) || v < 0 ||
                 v >= static_cast<int>(codegen::GemvVariants().size())) {
        return Fail(absl::InvalidArgumentError(
            absl::StrCat("--decode-gemv '", absl::GetFlag(FLAGS_decode_gemv),
                         "' is not a list of rule, off and GEMV variant indices")));
      }
      gemv.push_back(v);
    }
    if (pdl.empty()) pdl.push_back(-1);
    if (l2.empty()) l2.push_back(-1);
    if (gemv.empty()) gemv.push_back(runtime::kGemvByRule);
    for (int g : gemv) {
      for (int p : pdl) {
        for (int d : l2) {
          // Without programmatic launch the GEMV prefetches nothing: one row is enough.
          if (p == 0 && d != l2.front()) continue;
          settings.push_back({p, d, g});
        }
      }
    }
  }
  std::printf("%6s %6s %4s %4s %5s %10s %12s %12s %10s %9s\n", "cache", "batch", "pdl", "l2",
              "gemv", "step ms", "tokens/s", "MiB read", "floor ms", "of floor");
  // --tuning: the file's choices (GEMM algorithms, decode splits) against the heuristics.
  std::shared_ptr<const runtime::KernelTuning> tuning;
  if (const std::string path = absl::GetFlag(FLAGS_tuning); !path.empty()) {
    auto text = ir::ReadRegularFile(path, int64_t{1} << 22, "tuning file");
    if (!text.ok()) return Fail(text.status());
    auto parsed = runtime::ParseTuning(*text, path);
    if (!parsed.ok()) return Fail(parsed.status());
    tuning = std::make_shared<const runtime::KernelTuning>(*std::move(parsed));
  }
  double bandwidth = 0;
  std::vector<std::pair<Row, Row>> compared;  // heuristic, tuned
  for (const std::string& kind : caches) {
    const uint64_t seed = static_cast<uint64_t>(absl::GetFlag(FLAGS_seed));
    if (tuning != nullptr) std::printf("-- %s: heuristics\n", kind.c_str());
    auto rows = MeasureCache(dir, *plan, kind, batches, context, steps, seed, &bandwidth, nullptr,
                             settings);
    if (!rows.ok()) {
      return Fail(absl::Status(rows.status().code(),
                               absl::StrCat("cache ", kind, ": ", rows.status().message())));
    }
    if (tuning == nullptr) continue;
    std::printf("-- %s: tuned (%s)\n", kind.c_str(), absl::GetFlag(FLAGS_tuning).c_str());
    auto tuned = MeasureCache(dir, *plan, kind, batches, context, steps, seed, &bandwidth, tuning,
                              settings);
    if (!tuned.ok()) {
      return Fail(absl::Status(tuned.status().code(),
                               absl::StrCat("cache ", kind, " tuned: ", tuned.status().message())));
    }
    for (size_t i = 0; i < rows->size() && i < tuned->size(); ++i) {
      compared.push_back({(*rows)[i], (*tuned)[i]});
    }
  }
  std::printf("\nread bandwidth (probe): %.0f GB/s\n", bandwidth / 1e9);
  if (tuning != nullptr) {
    std::printf("\ntuned (%s, %zu GEMM shapes, %zu decode kernels) vs heuristics\n%6s %6s %12s "
                "%12s %9s\n",
                tuning->device.c_str(), tuning->gemm.size(), tuning->decode.size(), "cache",
                "batch", "heuristic ms", "tuned ms", "speed-up");
    double worst = 1e9;
    int faster = 0;
    for (const auto& [h, t] : compared) {
      const double x = h.step_ms / t.step_ms;
      worst = std::min(worst, x);
      faster += x > 1.02 ? 1 : 0;
      std::printf("%6s %6lld %12.3f %12.3f %8.3fx\n", h.cache.c_str(),
                  static_cast<long long>(h.batch), h.step_ms, t.step_ms, x);
    }
    std::printf("tuned: worst row %.3fx of the heuristics' speed, faster by > 2%% in %d of %zu "
                "rows\n", worst, faster, compared.size());
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return 0;
}

}  // namespace
}  // namespace kvcc::tools

KVCC_BENCH(decode,
           "decode --config CONFIG.json [--batches 1,8,32,64] [--context 2048] "
           "[--caches f16,i8,i4] [--tuning FILE] [--w4-group-size G]   (decode step time vs the bandwidth floor)",
           kvcc::tools::BenchDecode);
