// `kvcc bench memory`: the seed's GPU memory table. For a config.json (no checkpoint needed) it
// builds the model at its real shapes with seeded random weights generated on the GPU (with
// the execution fusions and f16 activations `kvcc generate` runs), fills
// batch x max-len tokens of paged KV cache, runs real decode steps, and reports the peak device
// memory per batch for the fp16 and the int8 cache, with the KV bytes per session.
//
// The graph comes from the real importer: a safetensors header naming every tensor the config
// implies, over a sparse (never read) data section, so the host needs neither the weights'
// bytes nor their disk space; the CUDA backend adopts device tensors filled by a hash-based RNG
// kernel as the uploads of those host views.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "frontend/model_loader.h"
#include "frontend/safetensors.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"
#include "passes/execution_fusions.h"
#include "testing/synth.h"
#include "ir/kv_cache_scheme.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_memory.h"
#include "runtime/executor.h"
#include "tools/bench_model.h"
#include "tools/bench_registry.h"
#include "tools/flags.h"

ABSL_DECLARE_FLAG(std::string, config);
ABSL_FLAG(std::string, batches, "8,16,32,48", "bench memory: comma-separated session counts");
ABSL_FLAG(std::string, quant_policies, "0,4",
          "bench memory: comma-separated --quant-policy values (0 = fp16 cache, 4 = int8)");
ABSL_FLAG(int32_t, decode_steps, 8, "bench memory: decode steps per batch after the fill");
ABSL_FLAG(int32_t, prefill_tokens, 512,
          "bench memory: tokens of real prefill (one chunk) before the decode steps");

namespace kvcc::tools {
namespace {

using Clock = std::chrono::steady_clock;

double MiB(int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "kvcc bench memory: %s\n", std::string(s.message()).c_str());
  return 1;
}

absl::StatusOr<std::vector<int64_t>> ParseList(const std::string& text, const char* flag) {
  std::vector<int64_t> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < 0) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, " '", text,
                                                     "' is not a list of non-negative integers"));
    }
    out.push_back(v);
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat("--", flag, " is empty"));
  return out;
}

struct RunResult {
  int64_t batch = 0;
  int policy = 0;
  int64_t context_bytes = 0;  // device memory in use before the backend (the bare context)
  int64_t context_end = 0;    // in use after the decode steps less pool, KV and workspace
  int64_t stack_limit = -1;   // the per-thread stack limit the backend set
  int64_t peak_used = 0;      // device memory in use at the peak (as nvidia-smi counts it)
  int64_t weight_bytes = 0;
  int64_t kv_bytes = 0;
  int64_t kv_per_session = 0;
  int64_t pool_high = 0;  // stream-ordered pool high-water mark (weights, activations)
  int64_t workspace = 0;
  double decode_ms = 0;
  // The backend's op-result block cache (not the decode graphs' own): the most bytes live at
  // once, and the most held (live + idle) at once.
  int64_t block_live = 0, block_held = 0;
};

// One (policy, batch) measurement from a fresh backend.
absl::StatusOr<RunResult> MeasureOne(const std::string& model_dir, const testing::SynthPlan& plan,
                                     int policy, int64_t batch, int64_t max_len, int steps,
                                     int64_t prefill_tokens, uint64_t seed) {
  if (policy != 0 && policy != 4) {
    return absl::InvalidArgumentError(absl::StrCat("quant policy ", policy,
                                                   " is not 0 (fp16) or 4 (int8)"));
  }
  KVCC_ASSIGN_OR_RETURN(std::unique_ptr<ir::Module> module,
                        LoadBenchModule(model_dir, policy == 4 ? "i8" : "f16"));
  // The graph and activations `kvcc generate` runs: q/k/v and gate/up merged, residual adds
  // fused with the norms, f16 activations.
  KVCC_RETURN_IF_ERROR(passes::ApplyExecutionFusions(*module));
  RunResult r;
  r.batch = batch;
  r.policy = policy;
  size_t free_b = 0, total_b = 0;
  KVCC_RETURN_IF_ERROR(runtime::CudaCheck(cudaFree(nullptr), "cudaFree(0)"));
  cudaMemGetInfo(&free_b, &total_b);
  r.context_bytes = static_cast<int64_t>(total_b - free_b);
  int64_t peak = r.context_bytes;
  auto sample = [&]() -> absl::Status {
    KVCC_RETURN_IF_ERROR(runtime::CudaCheck(cudaDeviceSynchronize(), "synchronize"));
    cudaMemGetInfo(&free_b, &total_b);
    peak = std::max<int64_t>(peak, static_cast<int64_t>(total_b - free_b));
    return absl::OkStatus();
  };

  KVCC_ASSIGN_OR_RETURN(auto backend, runtime::CudaBackend::Create(0));
  backend->SetHalfActivations(runtime::kModelActivationDType == ir::DType::kF16);
  KVCC_RETURN_IF_ERROR(AdoptRandomWeights(*module, plan, seed, backend.get()));
  const int64_t adopted = backend->weight_bytes();
  KVCC_ASSIGN_OR_RETURN(auto exec, runtime::Executor::Create(module.get(), backend.get()));
  if (backend->weight_bytes() != adopted) {
    return absl::InternalError("a weight was uploaded from the host instead of adopted");
  }
  r.weight_bytes = adopted;
  const int64_t blocks = (batch * max_len + kBenchBlockSize - 1) / kBenchBlockSize;
  KVCC_ASSIGN_OR_RETURN(auto spec, runtime::KvCacheSpecFromModule(*module, kBenchBlockSize, blocks));
  KVCC_ASSIGN_OR_RETURN(auto cache, backend->CreateKvCache(spec));
  runtime::KvCache& kv = *cache;
  r.kv_bytes = spec.layout.TotalBytes();
  r.kv_per_session = r.kv_bytes / batch;
  // Fill positions [0, max_len - steps) of every session with random K/V rows, then one
  // real prefill chunk of session 0 over the last `prefill_tokens` of that range (which
  // overwrites its rows with the model's own).
  const int64_t fill = max_len - steps;
  KVCC_RETURN_IF_ERROR(FillBenchCache(backend.get(), spec, batch, max_len, fill, seed, &kv));
  // The fill's scratch rows are not part of serving: give them back to the driver before the
  // peak is watched again.
  cudaMemPool_t pool;
  KVCC_RETURN_IF_ERROR(runtime::CudaCheck(cudaDeviceSynchronize(), "synchronize"));
  if (cudaDeviceGetDefaultMemPool(&pool, 0) == cudaSuccess) {
    cudaMemPoolTrimTo(pool, 0);
    uint64_t zero = 0;
    cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReservedMemHigh, &zero);
  }
  std::mt19937 rng(static_cast<uint32_t>(seed));
  const int64_t vocab = exec->vocab_size();
  const int64_t pre = std::min<int64_t>(prefill_tokens, fill);
  if (pre > 0) {
    runtime::StepBatch step;
    std::vector<int32_t> ids;
    for (int64_t p = fill - pre; p < fill; ++p) {
      step.sessions.push_back(0);
      step.positions.push_back(static_cast<int32_t>(p));
      ids.push_back(static_cast<int32_t>(rng() % vocab));
    }
    step.ComputeSeqLens();
    const std::vector<int64_t> last = {pre - 1};
    KVCC_ASSIGN_OR_RETURN(auto logits, exec->Run(ids, step, &kv, &last));
    KVCC_RETURN_IF_ERROR(sample());
  }
  // Real decode steps of every session together, at the end of the context.
  double total_ms = 0;
  for (int i = 0; i < steps; ++i) {
    runtime::StepBatch step;
    std::vector<int32_t> ids;
    for (int64_t s = 0; s < batch; ++s) {
      step.sessions.push_back(s);
      step.positions.push_back(static_cast<int32_t>(fill + i));
      ids.push_back(static_cast<int32_t>(rng() % vocab));
    }
    step.ComputeSeqLens();
    const auto t0 = Clock::now();
    KVCC_ASSIGN_OR_RETURN(auto logits, exec->Run(ids, step, &kv));
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (i > 0) total_ms += ms;  // the first step includes kernel loading
    KVCC_RETURN_IF_ERROR(sample());
  }
  r.decode_ms = steps > 1 ? total_ms / (steps - 1) : 0;
  r.peak_used = peak;
  uint64_t high = 0;
  if (cudaDeviceGetDefaultMemPool(&pool, 0) == cudaSuccess) {
    cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemHigh, &high);
    uint64_t zero = 0;
    cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReservedMemHigh, &zero);
  }
  r.pool_high = static_cast<int64_t>(high);
  r.workspace = backend->workspace_bytes();
  r.block_live = backend->block_stats().peak_live_bytes;
  r.block_held = backend->block_stats().peak_held_bytes;
  r.stack_limit = backend->context()->stack_limit_bytes();
  // What the context itself holds once every kernel has run (its local memory grown to the
  // launches' needs, lazily loaded modules): the device's use now, less the pool (weights and
  // cached activations), the KV cache and the GEMM workspace.
  uint64_t reserved = 0;
  KVCC_RETURN_IF_ERROR(sample());
  if (cudaDeviceGetDefaultMemPool(&pool, 0) == cudaSuccess) {
    cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &reserved);
  }
  r.context_end = static_cast<int64_t>(total_b - free_b) - static_cast<int64_t>(reserved) -
                  r.kv_bytes - r.workspace;
  return r;
}

int BenchMemory(const std::vector<std::string>& args) {
  std::string config = absl::GetFlag(FLAGS_config);
  if (config.empty() && args.size() == 1) config = args[0];
  if (config.empty() || args.size() > 1) {
    std::fprintf(stderr,
                 "usage: kvcc bench memory --config CONFIG.json [--batches 8,16,32,48] "
                 "[--max-len 2048] [--quant-policies 0,4] [--decode-steps 8] [--w4-group-size 128]\n");
    return 2;
  }
  auto batches = ParseList(absl::GetFlag(FLAGS_batches), "batches");
  if (!batches.ok()) return Fail(batches.status());
  auto policies = ParseList(absl::GetFlag(FLAGS_quant_policies), "quant-policies");
  if (!policies.ok()) return Fail(policies.status());
  const int64_t max_len = absl::GetFlag(FLAGS_max_len);
  const int steps = absl::GetFlag(FLAGS_decode_steps);
  if (max_len <= steps + 1 || steps < 1) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "--max-len ", max_len, " must exceed --decode-steps ", steps, " + 1 (and steps >= 1)")));
  }
  if (!runtime::CudaDeviceAvailable()) {
    return Fail(absl::FailedPreconditionError("bench memory measures GPU memory; no GPU found"));
  }
  const int64_t w4_group_size = absl::GetFlag(FLAGS_w4_group_size);
  const std::string dir = BenchCheckpointDir("memory", config, w4_group_size);
  auto plan = WriteShapeOnlyCheckpoint(config, dir, w4_group_size);
  if (!plan.ok()) return Fail(plan.status());
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, 0);
  std::printf("kvcc bench memory: %s%s on %s, max-len %lld, decode steps %d, prefill chunk %d, "
              "block size %d\n",
              config.c_str(), W4Label(w4_group_size).c_str(), prop.name, static_cast<long long>(max_len), steps,
              absl::GetFlag(FLAGS_prefill_tokens), kBenchBlockSize);
  std::printf("int8 cache: fixed per-layer parameters (zp 0, scale 8/255); memory does not "
              "depend on the values\n\n");
  std::printf("%6s %6s %10s %10s %12s %10s %10s %10s %12s %10s %12s %9s %9s\n", "policy",
              "batch", "peak MiB", "weights", "KV MiB", "KV/sess", "ctx start", "ctx end",
              "activations", "beyond", "decode ms", "blk live", "blk held");
  std::map<std::pair<int, int64_t>, RunResult> results;
  for (int64_t policy : *policies) {
    for (int64_t batch : *batches) {
      if (batch <= 0) return Fail(absl::InvalidArgumentError("a batch must be positive"));
      auto r = MeasureOne(dir, *plan, static_cast<int>(policy), batch, max_len, steps,
                          absl::GetFlag(FLAGS_prefill_tokens),
                          static_cast<uint64_t>(absl::GetFlag(FLAGS_seed)));
      if (!r.ok()) {
        return Fail(absl::Status(r.status().code(),
                                 absl::StrCat("quant policy ", policy, ", batch ", batch, ": ",
                                              r.status().message())));
      }
      results[{static_cast<int>(policy), batch}] = *r;
      std::printf("%6d %6lld %10.0f %10.0f %12.0f %10.1f %10.0f %10.0f %12.0f %10.0f %12.2f "
                  "%9.0f %9.0f\n",
                  r->policy, static_cast<long long>(batch), MiB(r->peak_used),
                  MiB(r->weight_bytes), MiB(r->kv_bytes), MiB(r->kv_per_session),
                  MiB(r->context_bytes), MiB(r->context_end), MiB(r->pool_high - r->weight_bytes),
                  MiB(r->peak_used - r->weight_bytes - r->kv_bytes), r->decode_ms,
                  MiB(r->block_live), MiB(r->block_held));
      std::fflush(stdout);
    }
  }
  std::printf("\n'ctx start' = device memory in use before the backend is created (the CUDA "
              "context, or for later rows what the earlier ones left in it); 'ctx end' = in use "
              "after the decode steps less the pool, the KV cache and the workspace (the "
              "context with its local memory grown to the kernels' needs, plus small tables; "
              "stack limit set: %lld bytes per thread); 'activations' = the stream-ordered "
              "pool's high-water mark less the weights it holds; 'blk live' / 'blk held' = the "
              "most op-result bytes live at once / held with the idle ones (the backend's "
              "block cache; KVCC_BLOCK_REUSE=0: idle blocks kept by size); 'beyond' = peak - weights - "
              "KV: the context, the cuBLASLt workspace (%.0f MiB), activations and small "
              "tables. Peak = largest (total - free) of cudaMemGetInfo: everything in use on "
              "the device, the context included.\n\n",
              static_cast<long long>(results.begin()->second.stack_limit),
              MiB(results.begin()->second.workspace));
  std::printf("| batch | fp16 MiB | int8 MiB | diff MiB |\n|---:|---:|---:|---:|\n");
  for (int64_t batch : *batches) {
    auto f = results.find({0, batch});
    auto q = results.find({4, batch});
    std::printf("| %lld | %s | %s | %s |\n", static_cast<long long>(batch),
                f != results.end() ? absl::StrCat(static_cast<int64_t>(MiB(f->second.peak_used))).c_str() : "-",
                q != results.end() ? absl::StrCat(static_cast<int64_t>(MiB(q->second.peak_used))).c_str() : "-",
                f != results.end() && q != results.end()
                    ? absl::StrCat(static_cast<int64_t>(MiB(f->second.peak_used - q->second.peak_used))).c_str()
                    : "-");
  }
  std::printf("\nKV bytes per session (%lld tokens):", static_cast<long long>(max_len));
  for (int64_t policy : *policies) {
    auto it = results.find({static_cast<int>(policy), batches->front()});
    std::printf(" %s %.1f MiB", policy == 4 ? "int8" : "fp16", MiB(it->second.kv_per_session));
  }
  std::printf("\n");
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return 0;
}

}  // namespace
}  // namespace kvcc::tools

KVCC_BENCH(memory,
           "memory --config CONFIG.json [--batches 8,16,32,48] [--max-len 2048] "
           "[--quant-policies 0,4] [--w4-group-size G]   (peak GPU memory per batch, fp16 vs int8 KV cache)",
           kvcc::tools::BenchMemory);
