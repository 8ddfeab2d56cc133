// `kvcc bench prefill`: time to first token of one prompt at a config.json's real shapes (the
// model of tools/bench_model.h, random weights on the GPU, f16 cache, the execution fusions and
// f16 activations `kvcc generate` runs): the whole prompt in one
// eager executor step (every layer's cache written, logits of the last token only, synced), and
// the TFLOP/s that time gives the step's matmul work (the linear layers over every token, the
// causal attention, the output projection of one row).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"
#include "passes/execution_fusions.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_memory.h"
#include "runtime/executor.h"
#include "tools/bench_model.h"
#include "tools/bench_registry.h"
#include "tools/flags.h"

ABSL_DECLARE_FLAG(std::string, config);

namespace kvcc::tools {
namespace {

using Clock = std::chrono::steady_clock;

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "kvcc bench prefill: %s\n", std::string(s.message()).c_str());
  return 1;
}

// Multiply-adds x 2 of a prefill of `tokens` tokens: every linear over every token, causal
// attention (QK^T and PV over tokens * (tokens + 1) / 2 pairs per head), one row of lm_head.
double PrefillFlops(const ir::Module& m, int64_t tokens) {
  double flops = 0;
  for (const auto& n : m.graph.nodes()) {
    if (n->op == ir::op::kLinear && n->input(1) != nullptr) {
      const auto& shape = n->input(1)->type.shape;
      if (shape.size() == 2) flops += 2.0 * shape[0] * shape[1] * tokens;
    } else if (n->op == ir::op::kLmHead && n->input(1) != nullptr) {
      const auto& shape = n->input(1)->type.shape;
      if (shape.size() == 2) flops += 2.0 * shape[0] * shape[1];
    } else if (n->op == ir::op::kAttention) {
      const double width = static_cast<double>(n->IntOr("heads", 0)) * n->IntOr("head_dim", 0);
      flops += 2 * 2.0 * width * tokens * (tokens + 1) / 2;
    }
  }
  return flops;
}

int BenchPrefill(const std::vector<std::string>& args) {
  std::string config = absl::GetFlag(FLAGS_config);
  if (config.empty() && args.size() == 1) config = args[0];
  std::string prompts = absl::GetFlag(FLAGS_prompt);
  if (prompts.empty()) prompts = "512,2048,8192";
  if (config.empty() || args.size() > 1) {
    std::fprintf(stderr, "usage: kvcc bench prefill --config CONFIG.json [--prompt 512,2048,8192]\n");
    return 2;
  }
  std::vector<int64_t> lengths;
  for (absl::string_view part : absl::StrSplit(prompts, ',', absl::SkipEmpty())) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v <= 0 || v > (int64_t{1} << 20)) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "--prompt '", prompts, "' is not a list of prompt lengths (1..1048576 tokens)")));
    }
    lengths.push_back(v);
  }
  if (lengths.empty()) return Fail(absl::InvalidArgumentError("--prompt names no lengths"));
  if (!runtime::CudaDeviceAvailable()) {
    return Fail(absl::FailedPreconditionError("bench prefill times GPU steps; no GPU found"));
  }
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("kvcc-bench-prefill-" + std::filesystem::path(config).stem().string()))
                              .string();
  auto run = [&]() -> absl::Status {
    KVCC_ASSIGN_OR_RETURN(auto plan, WriteShapeOnlyCheckpoint(config, dir));
    KVCC_ASSIGN_OR_RETURN(auto module, LoadBenchModule(dir, "f16"));
    // The graph and activations `kvcc generate` runs: q/k/v and gate/up merged, residual adds
    // fused with the norms, f16 activations.
    KVCC_RETURN_IF_ERROR(passes::ApplyExecutionFusions(*module));
    KVCC_ASSIGN_OR_RETURN(auto backend, runtime::CudaBackend::Create(0));
    backend->SetHalfActivations(runtime::kModelActivationDType == ir::DType::kF16);
    const uint64_t seed = static_cast<uint64_t>(absl::GetFlag(FLAGS_seed));
    KVCC_RETURN_IF_ERROR(AdoptRandomWeights(*module, plan, seed, backend.get()));
    KVCC_ASSIGN_OR_RETURN(auto exec, runtime::Executor::Create(module.get(), backend.get()));
    const int64_t longest = *std::max_element(lengths.begin(), lengths.end());
    const int64_t blocks = (longest + kBenchBlockSize - 1) / kBenchBlockSize;
    KVCC_ASSIGN_OR_RETURN(auto spec,
                          runtime::KvCacheSpecFromModule(*module, kBenchBlockSize, blocks));
    KVCC_ASSIGN_OR_RETURN(auto cache, backend->CreateKvCache(spec));
    KVCC_RETURN_IF_ERROR(cache->blocks().AddSession(0));
    KVCC_RETURN_IF_ERROR(cache->blocks().Reserve(0, longest));
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    std::printf("kvcc bench prefill: %s on %s, f16 weights and cache, one eager step per "
                "prompt, median of 5 after a warm-up\n\n%8s %10s %12s %10s\n",
                config.c_str(), prop.name, "tokens", "TTFT ms", "tokens/s", "TFLOP/s");
    std::mt19937 rng(static_cast<uint32_t>(seed));
    const int64_t vocab = exec->vocab_size();
    for (int64_t n : lengths) {
      std::vector<int32_t> ids(n);
      for (auto& id : ids) id = static_cast<int32_t>(rng() % vocab);
      runtime::StepBatch batch;
      batch.sessions.assign(n, 0);
      for (int64_t i = 0; i < n; ++i) batch.positions.push_back(static_cast<int32_t>(i));
      batch.ComputeSeqLens();
      const std::vector<int64_t> last = {n - 1};
      std::vector<double> ms;
      for (int rep = -1; rep < 5; ++rep) {
        KVCC_RETURN_IF_ERROR(backend->Synchronize());
        const auto t0 = Clock::now();
        KVCC_ASSIGN_OR_RETURN(auto logits, exec->RunOnDevice(ids, batch, cache.get(), &last));
        KVCC_RETURN_IF_ERROR(backend->Synchronize());
        if (rep >= 0) {
          ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        }
      }
      std::sort(ms.begin(), ms.end());
      const double t = ms[ms.size() / 2];
      std::printf("%8lld %10.2f %12.0f %10.1f\n", static_cast<long long>(n), t, 1e3 * n / t,
                  PrefillFlops(*module, n) / (t * 1e-3) / 1e12);
      std::fflush(stdout);
    }
    return absl::OkStatus();
  };
  absl::Status s = run();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return s.ok() ? 0 : Fail(s);
}

}  // namespace
}  // namespace kvcc::tools

KVCC_BENCH(prefill,
           "prefill --config CONFIG.json [--prompt 512,2048,8192]   (time to first token, "
           "TFLOP/s)",
           kvcc::tools::BenchPrefill);
