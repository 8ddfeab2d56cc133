// `kvcc bench prefill_attention`: times the causal prefill attention kernels (tensor-core and
// scalar) over a paged KV cache for whole prompts (default 512/2048/8192 tokens, 32 heads x 128,
// MHA and GQA 4:1, fp16 and int8 caches) and reports time, TFLOP/s and the fraction of a
// cuBLASLt f16 GEMM's TFLOP/s measured in the same run (the tensor-core ceiling).
// bench/prefill_attention_peer.py times PyTorch's SDPA flash backend at the same shapes.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "codegen/kernel_cache.h"
#include "ir/half.h"
#include "runtime/cuda/cublaslt_gemm.h"
#include "runtime/cuda/cuda_attention.h"
#include "runtime/cuda/cuda_context.h"
#include "runtime/kv_cache_layout.h"
#include "tools/bench_cache_kinds.h"
#include "tools/bench_registry.h"

ABSL_FLAG(std::string, pa_prompts, "512,2048,8192", "bench prefill_attention: prompt lengths");
ABSL_FLAG(int32_t, pa_batch, 1, "bench prefill_attention: sessions, each with the whole prompt");
ABSL_FLAG(int32_t, pa_heads, 32, "bench prefill_attention: query heads");
ABSL_FLAG(std::string, pa_kv_heads, "32,8", "bench prefill_attention: kv head counts to time");
ABSL_FLAG(int32_t, pa_head_dim, 128, "bench prefill_attention: head dim");
ABSL_FLAG(int32_t, pa_block_size, 64, "bench prefill_attention: cache block size (tokens)");
ABSL_FLAG(std::string, pa_caches, "f16,i8",
          "bench prefill_attention: caches (f16, i8 = per-head int8, i8_online, i4 = per-head "
          "int4, i4_online, fp8 = e4m3 per head)");
ABSL_FLAG(std::string, pa_kernels, "tc,scalar", "bench prefill_attention: kernels (tc, scalar)");
ABSL_FLAG(int32_t, pa_threads, 0, "bench prefill_attention: CTA size (0: default; tc: 16 rows a warp)");
ABSL_FLAG(int32_t, pa_kv_tile, 0, "bench prefill_attention: cache tokens per tile (0: default)");
ABSL_FLAG(std::string, pa_tiles, "",
          "bench prefill_attention: tc variants to time, threads/q_tile[/kv_tile] comma-separated "
          "(q_tile threads / 2: 16 rows a warp, threads: 32; empty: --pa_threads/--pa_kv_tile)");
ABSL_FLAG(int32_t, pa_iters, 20, "bench prefill_attention: timed calls per row (at most)");

namespace kvcc::tools {
namespace {

#define PA_CHECK(expr) KVCC_BENCH_CUDA_CHECK("prefill_attention", expr)

// A device buffer of `n` values: f16 cache rows get uniform values in [-1, 1], quantized ones
// arbitrary codes (never all zeros, which could run faster than real data).
struct DeviceBytes {
  void* ptr = nullptr;
  ~DeviceBytes() { cudaFree(ptr); }
};
cudaError_t FillDevice(DeviceBytes* buf, size_t bytes, bool f16, uint32_t seed) {
  std::vector<uint16_t> host((bytes + 1) / 2);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> val(-1.f, 1.f);
  for (uint16_t& h : host) h = f16 ? ir::FloatToHalf(val(rng)) : uint16_t(rng());
  cudaError_t e = cudaMalloc(&buf->ptr, host.size() * 2);
  if (e != cudaSuccess) return e;
  return cudaMemcpy(buf->ptr, host.data(), host.size() * 2, cudaMemcpyHostToDevice);
}

// Median milliseconds of `fn` over up to `iters` calls (fewer for slow calls: ~0.5 s a row)
// after two warm-up calls; negative when a call fails.
template <typename Fn>
double MedianMs(Fn fn, int iters, cudaStream_t stream) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  std::vector<float> times;
  double spent = 0;
  for (int i = 0; i < iters + 2 && (i < 5 || spent < 500); ++i) {
    cudaEventRecord(start, stream);
    if (!fn()) return -1;
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    spent += ms;
    if (i >= 2) times.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times.empty() ? -1 : times[times.size() / 2];
}

int RunBenchPrefillAttention(const std::vector<std::string>& args) {
  std::vector<int> prompts, kv_heads_list;
  const int batch = absl::GetFlag(FLAGS_pa_batch);
  const int heads = absl::GetFlag(FLAGS_pa_heads);
  const int head_dim = absl::GetFlag(FLAGS_pa_head_dim);
  const int block_size = absl::GetFlag(FLAGS_pa_block_size);
  const int iters = std::max(1, absl::GetFlag(FLAGS_pa_iters));
  if (!ParseBenchCounts("prefill_attention", "--pa_prompts", absl::GetFlag(FLAGS_pa_prompts), 1,
                        &prompts) ||
      !ParseBenchCounts("prefill_attention", "--pa_kv_heads", absl::GetFlag(FLAGS_pa_kv_heads), 1,
                        &kv_heads_list) ||
      prompts.empty() || kv_heads_list.empty() || batch <= 0 || heads <= 0 || head_dim <= 0 ||
      block_size <= 0) {
    std::fprintf(stderr, "bench prefill_attention: prompts, kv heads and shapes must be "
                         "positive integers\n");
    return 2;
  }
  std::vector<std::pair<std::string, ir::KvStorage>> caches;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_pa_caches), ',')) {
    // One storage for K and V: the mixed kinds are timed by `kvcc bench attention`.
    BenchCacheKind kind;
    if (!ParseBenchCacheKind(std::string(s), &kind) || !(kind.k == kind.v)) {
      std::fprintf(stderr, "bench prefill_attention: unknown or mixed K/V cache '%s'\n",
                   std::string(s).c_str());
      return 2;
    }
    caches.emplace_back(kind.name, kind.k);
  }
  // The tc variants: (threads, q_tile, kv_tile), 0 for a default.
  struct TcTiles {
    int threads = 0, q_tile = 0, kv_tile = 0;
  };
  std::vector<TcTiles> tc_tiles;
  if (absl::GetFlag(FLAGS_pa_tiles).empty()) {
    tc_tiles.push_back({absl::GetFlag(FLAGS_pa_threads), 0, absl::GetFlag(FLAGS_pa_kv_tile)});
  } else {
    for (absl::string_view v : absl::StrSplit(absl::GetFlag(FLAGS_pa_tiles), ',')) {
      std::vector<std::string> parts = absl::StrSplit(v, '/');
      TcTiles t;
      int* fields[3] = {&t.threads, &t.q_tile, &t.kv_tile};
      bool ok = parts.size() >= 1 && parts.size() <= 3;
      for (size_t i = 0; ok && i < parts.size(); ++i) {
        ok = absl::SimpleAtoi(parts[i], fields[i]) && *fields[i] >= 0;
      }
      if (!ok) {
        std::fprintf(stderr, "bench prefill_attention: --pa_tiles wants threads/q_tile[/kv_tile], "
                             "not '%s'\n", std::string(v).c_str());
        return 2;
      }
      tc_tiles.push_back(t);
    }
  }
  std::vector<bool> kernels;  // tensor cores?
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_pa_kernels), ',')) {
    if (s != "tc" && s != "scalar") {
      std::fprintf(stderr, "bench prefill_attention: kernels are tc and scalar, not '%s'\n",
                   std::string(s).c_str());
      return 2;
    }
    kernels.push_back(s == "tc");
  }
  for (int kvh : kv_heads_list) {
    if (heads % kvh != 0) {
      std::fprintf(stderr, "bench prefill_attention: %d heads over %d kv heads\n", heads, kvh);
      return 2;
    }
  }
  absl::StatusOr<std::shared_ptr<runtime::CudaContext>> ctx = runtime::CudaContext::Create(0);
  if (!ctx.ok()) {
    std::fprintf(stderr, "bench prefill_attention: %s\n", ctx.status().ToString().c_str());
    return 1;
  }
  const cudaStream_t stream = (*ctx)->stream();
  cudaDeviceProp prop;
  PA_CHECK(cudaGetDeviceProperties(&prop, 0));

  // The ceiling: a square f16 GEMM through cuBLASLt (f32 out), as the model's linears run.
  double gemm_tflops = 0;
  {
    absl::StatusOr<std::unique_ptr<runtime::CublasLtGemm>> gemm = runtime::CublasLtGemm::Create(*ctx);
    const int n = 8192;
    DeviceBytes x, w, y;
    if (gemm.ok() && FillDevice(&x, size_t(n) * n * 2, true, 3) == cudaSuccess &&
        FillDevice(&w, size_t(n) * n * 2, true, 4) == cudaSuccess &&
        cudaMalloc(&y.ptr, size_t(n) * n * 4) == cudaSuccess) {
      const double ms = MedianMs(
          [&] {
            return (*gemm)->Matmul(x.ptr, w.ptr, static_cast<float*>(y.ptr), n, n, n,
                                   ir::DType::kF16).ok();
          },
          10, stream);
      if (ms > 0) gemm_tflops = 2.0 * n * n * n / (ms * 1e-3) / 1e12;
    }
  }
  std::printf("device: %s, %d SMs; batch %d, %d heads x %d, block %d; cuBLASLt f16 GEMM 8192^3: "
              "%.0f TFLOP/s\n",
              prop.name, prop.multiProcessorCount, batch, heads, head_dim, block_size, gemm_tflops);
  std::printf("%-7s %-6s %6s %-6s %-11s %5s %5s %10s %9s %8s\n", "cache", "kv_h", "prompt",
              "kernel", "thr/qt/kvt", "regs", "spill", "time_ms", "TFLOP/s", "of_gemm");

  codegen::KernelCache kernel_cache(codegen::KernelCache::DefaultDir());
  const int max_prompt = *std::max_element(prompts.begin(), prompts.end());
  const size_t q_elems = size_t(batch) * max_prompt * heads * head_dim;
  DeviceBytes d_q, d_out, d_tables, d_lens, d_start, d_zp, d_scale;
  PA_CHECK(FillDevice(&d_q, q_elems * 2, true, 5));
  PA_CHECK(cudaMalloc(&d_out.ptr, q_elems * 2));
  const size_t nparams = size_t(heads) * head_dim;
  const std::vector<float> zp(nparams, 0.01f), scale(nparams, 0.008f);
  PA_CHECK(cudaMalloc(&d_zp.ptr, nparams * 4));
  PA_CHECK(cudaMalloc(&d_scale.ptr, nparams * 4));
  PA_CHECK(cudaMemcpy(d_zp.ptr, zp.data(), nparams * 4, cudaMemcpyHostToDevice));
  PA_CHECK(cudaMemcpy(d_scale.ptr, scale.data(), nparams * 4, cudaMemcpyHostToDevice));
  const int max_blocks = (max_prompt + block_size - 1) / block_size;
  const int64_t num_blocks = int64_t{batch} * max_blocks;
  std::vector<int32_t> tables(num_blocks);
  std::iota(tables.begin(), tables.end(), 0);
  std::shuffle(tables.begin(), tables.end(), std::mt19937(7));
  PA_CHECK(cudaMalloc(&d_tables.ptr, tables.size() * 4));
  PA_CHECK(cudaMemcpy(d_tables.ptr, tables.data(), tables.size() * 4, cudaMemcpyHostToDevice));
  PA_CHECK(cudaMalloc(&d_lens.ptr, batch * 4));
  PA_CHECK(cudaMalloc(&d_start.ptr, (batch + 1) * 4));

  for (const auto& [cache_name, storage] : caches) {
    for (int kv_heads : kv_heads_list) {
      runtime::KvCacheLayout layout;
      layout.num_layers = 1;
      layout.kv_heads = kv_heads;
      layout.head_dim = head_dim;
      layout.block_size = block_size;
      layout.num_blocks = num_blocks;
      ir::KvCacheScheme scheme;
      scheme.SetPart(ir::KvPart::kKey, storage);
      scheme.SetPart(ir::KvPart::kValue, storage);
      layout.SetStorage(scheme);
      const bool f16 = storage.dtype == ir::DType::kF16;
      DeviceBytes d_k, d_v, d_kp, d_vp;
      PA_CHECK(FillDevice(&d_k, size_t(num_blocks) * layout.BlockBytes(ir::KvPart::kKey), f16, 1));
      PA_CHECK(FillDevice(&d_v, size_t(num_blocks) * layout.BlockBytes(ir::KvPart::kValue), f16, 2));
      runtime::CudaKvLayer layer;
      layer.k = d_k.ptr;
      layer.v = d_v.ptr;
      if (storage.online()) {
        // Plausible (scale, zero) pairs: ~0.0103 and -1.
        std::vector<uint16_t> params(size_t(num_blocks) * kv_heads * block_size * 2);
        for (size_t i = 0; i < params.size(); i += 2) {
          params[i] = 0x2148;
          params[i + 1] = 0xBC00;
        }
        for (DeviceBytes* p : {&d_kp, &d_vp}) {
          PA_CHECK(cudaMalloc(&p->ptr, params.size() * 2));
          PA_CHECK(cudaMemcpy(p->ptr, params.data(), params.size() * 2, cudaMemcpyHostToDevice));
        }
        layer.k_params = static_cast<uint16_t*>(d_kp.ptr);
        layer.v_params = static_cast<uint16_t*>(d_vp.ptr);
      }
      layer.k_zp = layer.v_zp = static_cast<float*>(d_zp.ptr);
      layer.k_scale = layer.v_scale = static_cast<float*>(d_scale.ptr);
      // (tensor cores?, tiles): every tc variant, the scalar kernel once.
      std::vector<std::pair<bool, TcTiles>> runs;
      for (bool tc : kernels) {
        if (!tc) runs.push_back({false, TcTiles{}});
        for (size_t i = 0; tc && i < tc_tiles.size(); ++i) runs.push_back({true, tc_tiles[i]});
      }
      for (const auto& [tc, tiles] : runs) {
        runtime::CudaAttentionConfig cfg;
        cfg.heads = heads;
        cfg.kv_heads = kv_heads;
        cfg.head_dim = head_dim;
        cfg.block_size = block_size;
        cfg.SetStorage(scheme);
        cfg.prefill_tensor_cores = tc;
        cfg.prefill_threads = tiles.threads;
        cfg.prefill_q_tile = tiles.q_tile;
        cfg.prefill_kv_tile = tiles.kv_tile;
        auto attn = runtime::CudaAttention::Create(cfg, &kernel_cache);
        if (!attn.ok()) {
          std::printf("%-7s %-6d %s\n", cache_name.c_str(), kv_heads,
                      attn.status().ToString().c_str());
          continue;
        }
        const codegen::BuiltKernel& k = (*attn)->prefill_kernel();
        const bool is_tc = k.rendered.spec.op == codegen::KernelOp::kPrefillAttentionTc;
        for (int prompt : prompts) {
          std::vector<int32_t> lens(batch, prompt), start(batch + 1);
          for (int b = 0; b <= batch; ++b) start[b] = b * prompt;
          PA_CHECK(cudaMemcpy(d_lens.ptr, lens.data(), batch * 4, cudaMemcpyHostToDevice));
          PA_CHECK(cudaMemcpy(d_start.ptr, start.data(), (batch + 1) * 4, cudaMemcpyHostToDevice));
          // Session b's blocks: row b of the [batch, max_blocks] table.
          runtime::PrefillArgs a;
          a.q = d_q.ptr;
          a.out = d_out.ptr;
          a.block_tables = static_cast<int32_t*>(d_tables.ptr);
          a.max_blocks_per_seq = max_blocks;
          a.seq_lens = static_cast<int32_t*>(d_lens.ptr);
          a.q_start = static_cast<int32_t*>(d_start.ptr);
          a.batch = batch;
          a.max_q_len = prompt;
          a.scale = 1.0f / std::sqrt(float(head_dim));
          const double ms =
              MedianMs([&] { return (*attn)->Prefill(layer, a, stream).ok(); }, iters, stream);
          // Causal: query i attends to i + 1 keys; QK^T and PV are 2 flops a multiply-add each.
          const double flops = 4.0 * batch * heads * head_dim * (double(prompt) * (prompt + 1) / 2);
          const double tflops = ms > 0 ? flops / (ms * 1e-3) / 1e12 : 0;
          const std::string shape = std::to_string(k.rendered.spec.threads) + "/" +
                                    std::to_string(k.rendered.spec.q_tile) + "/" +
                                    std::to_string(k.rendered.spec.kv_tile);
          std::printf("%-7s %-6d %6d %-6s %-11s %5d %5d %10.3f %9.1f %7.1f%%\n",
                      cache_name.c_str(), kv_heads, prompt, is_tc ? "tc" : "scalar",
                      shape.c_str(), k.compiled.usage.registers,
                      k.compiled.usage.spill_store_bytes + k.compiled.usage.spill_load_bytes, ms,
                      tflops, gemm_tflops > 0 ? 100.0 * tflops / gemm_tflops : 0.0);
          std::fflush(stdout);
        }
      }
    }
  }
  PA_CHECK(cudaDeviceSynchronize());
  return 0;
}

}  // namespace
}  // namespace kvcc::tools

KVCC_BENCH(prefill_attention,
           "prefill_attention [--pa_prompts 512,2048,8192 --pa_kv_heads 32,8 --pa_caches f16,i8 "
           "--pa_kernels tc,scalar --pa_tiles 256/128,128/128 --pa_batch 1]",
           kvcc::tools::RunBenchPrefillAttention);
