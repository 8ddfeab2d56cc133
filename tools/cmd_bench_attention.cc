// `kvcc bench attention`: times the NVRTC decode attention kernels over a paged KV cache
// (default: 32 heads x 128, batch 64, 2048 tokens, fp16/int8/int4 caches) and reports the time,
// the K+V bytes read per call over that time, and the fraction of the device's read bandwidth
// as a probe (codegen/ops_probe.cuh) measures it at the start of the same run, with each
// kernel's registers and spills. A cache smaller than the L2 is timed over copies of itself
// used in turn (as a decode step's layers would be), so it is read from memory, not from L2.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "codegen/kernel_cache.h"
#include "codegen/ops_kernels.h"
#include "codegen/ops_params.h"
#include "runtime/cuda/cuda_attention.h"
#include "runtime/cuda/kernel_plan.h"
#include "runtime/kv_cache_layout.h"
#include "tools/bench_cache_kinds.h"
#include "tools/bench_registry.h"

ABSL_FLAG(int32_t, attn_batch, 64, "bench attention: sessions in the decode batch");
ABSL_FLAG(int32_t, attn_seq_len, 2048, "bench attention: cached tokens per session");
ABSL_FLAG(int32_t, attn_heads, 32, "bench attention: query heads");
ABSL_FLAG(int32_t, attn_kv_heads, 32, "bench attention: kv heads");
ABSL_FLAG(int32_t, attn_head_dim, 128, "bench attention: head dim");
ABSL_FLAG(int32_t, attn_block_size, 64, "bench attention: cache block size (tokens)");
ABSL_FLAG(std::string, attn_caches, "f16,i8,i4,i8_online",
          "bench attention: cache schemes (f16, i8 = per-head int8, i4 = per-head int4, "
          "i8_online, i4_online, k8v4 = int8 K per head + int4 V online, k8v4_online, fp8 = e4m3 "
          "per head, i4_kchannel = int4 K per channel + int4 V online)");
ABSL_FLAG(std::string, attn_splits, "auto", "bench attention: sequence splits to time, e.g. auto,1,2,4");
ABSL_FLAG(std::string, attn_vec_bytes, "0", "bench attention: decode vector widths to try (0 = default)");
ABSL_FLAG(std::string, attn_unroll, "0",
          "bench attention: decode unrolls to try: tokens per thread group per step (scalar), "
          "pipeline stages (tensor cores); 0 = default, e.g. 0,2,4");
ABSL_FLAG(std::string, attn_threads, "0",
          "bench attention: decode CTA sizes to try (0 = default), e.g. 0,64,128");
ABSL_FLAG(std::string, attn_kv_tile, "0",
          "bench attention: tensor-core decode tokens per softmax step to try (0 = default, 16, "
          "32), e.g. 0,32");
ABSL_FLAG(int32_t, attn_min_blocks, 0, "bench attention: decode CTAs per SM to allow for (0 = default)");
ABSL_FLAG(int32_t, attn_prefetch, -1, "bench attention: decode prefetch (-1 default, 0 off, 1 on)");
ABSL_FLAG(int32_t, attn_iters, 40, "bench attention: timed calls per configuration");
ABSL_FLAG(double, attn_peak_tbps, 0,
          "bench attention: memory bandwidth ceiling in TB/s (0: measure it with a read probe)");
ABSL_FLAG(std::string, attn_pdl, "1",
          "bench attention: split merges to time: 1 (programmatic dependent launch on sm_90+), 0 "
          "(an ordinary launch), e.g. 0,1");
ABSL_FLAG(std::string, attn_tc, "auto",
          "bench attention: decode kernels to time: auto (the heuristic), 0 (scalar), 1 "
          "(tensor cores where supported), e.g. 0,1");

namespace kvcc::tools {
namespace {

#define BENCH_CHECK(expr) KVCC_BENCH_CUDA_CHECK("attention", expr)

// Random cache contents: finite fp16 values in +-[1/8, 2) or arbitrary integer codes; online
// parameters are plausible fp16 (scale, zero) pairs. Never zeros (they can hide indexing bugs
// and run faster than real data).
void FillHost(std::vector<uint8_t>& bytes, bool f16, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i + 8 <= bytes.size(); i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    uint64_t w = x;
    if (f16) {
      // Each 16-bit lane: keep sign and mantissa, force the exponent into [12, 15].
      w = (w & 0x83FF83FF83FF83FFull) | 0x3000300030003000ull | ((w >> 2) & 0x0C000C000C000C00ull);
    }
    std::memcpy(&bytes[i], &w, 8);
  }
}

// Read bandwidth in bytes/s: the ops program's read probe over a 2 GiB buffer (less on small
// devices), ten timed passes after three warm-up ones; 0 when it cannot run.
double ProbeReadBandwidth(codegen::KernelStore* cache, int sm_count) {
  absl::StatusOr<codegen::GpuTarget> target = codegen::DetectGpuTarget(0);
  if (!target.ok()) return 0;
  absl::StatusOr<codegen::BuiltOpsKernels> ops =
      codegen::BuildOpsKernels(runtime::OpsKernelSpecFor(*target), cache);
  if (!ops.ok()) {
    std::fprintf(stderr, "bench attention: read probe: %s\n", ops.status().ToString().c_str());
    return 0;
  }
  cudaLibrary_t lib = nullptr;
  cudaKernel_t fn = nullptr;
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaLibraryLoadData(&lib, ops->compiled.cubin.data(), nullptr, nullptr, 0, nullptr,
                          nullptr, 0) != cudaSuccess ||
      cudaLibraryGetKernel(&fn, lib, "kvcc_read_probe") != cudaSuccess ||
      cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    cudaGetLastError();
    if (lib != nullptr) cudaLibraryUnload(lib);
    return 0;
  }
  const size_t bytes = std::min<size_t>(size_t{2} << 30, free_bytes / 4) / 16 * 16;
  void* buf = nullptr;
  unsigned long long* sink = nullptr;
  double bw = 0;
  if (cudaMalloc(&buf, bytes) == cudaSuccess &&
      cudaMalloc(reinterpret_cast<void**>(&sink), 8) == cudaSuccess &&
      cudaMemset(buf, 0x5a, bytes) == cudaSuccess) {
    kernels::ReadProbeParams p{buf, sink, static_cast<long long>(bytes / 16)};
    void* args[] = {&p};
    const dim3 grid(sm_count * 8), block(runtime::kOpsKernelThreads);
    cudaEvent_t t0, t1;
    cudaEventCreate(&t0);
    cudaEventCreate(&t1);
    constexpr int kReps = 10;
    for (int i = 0; i < 3 + kReps; ++i) {
      if (i == 3) cudaEventRecord(t0);
      cudaLaunchKernel(reinterpret_cast<const void*>(fn), grid, block, args, 0, nullptr);
    }
    cudaEventRecord(t1);
    float ms = 0;
    if (cudaEventSynchronize(t1) == cudaSuccess && cudaEventElapsedTime(&ms, t0, t1) == cudaSuccess &&
        ms > 0) {
      bw = double(bytes) * kReps / (ms * 1e-3);
    }
    cudaEventDestroy(t0);
    cudaEventDestroy(t1);
  }
  cudaGetLastError();
  cudaFree(buf);
  cudaFree(sink);
  cudaLibraryUnload(lib);
  return bw;
}

int RunBenchAttention(const std::vector<std::string>& args) {
  const int batch = absl::GetFlag(FLAGS_attn_batch);
  const int seq_len = absl::GetFlag(FLAGS_attn_seq_len);
  const int heads = absl::GetFlag(FLAGS_attn_heads);
  const int kv_heads = absl::GetFlag(FLAGS_attn_kv_heads);
  const int head_dim = absl::GetFlag(FLAGS_attn_head_dim);
  const int block_size = absl::GetFlag(FLAGS_attn_block_size);
  const int iters = std::max(1, absl::GetFlag(FLAGS_attn_iters));
  if (batch <= 0 || seq_len <= 0 || heads <= 0 || kv_heads <= 0 || head_dim <= 0 ||
      block_size <= 0) {
    std::fprintf(stderr, "bench attention: shapes must be positive\n");
    return 2;
  }
  std::vector<BenchCacheKind> kinds;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_attn_caches), ',')) {
    BenchCacheKind k;
    if (!ParseBenchCacheKind(std::string(s), &k)) {
      std::fprintf(stderr, "bench attention: unknown cache '%s'\n", std::string(s).c_str());
      return 2;
    }
    kinds.push_back(k);
  }
  std::vector<int> splits_list;  // 0 = auto
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_attn_splits), ',')) {
    int v = 0;
    if (s != "auto" && (!absl::SimpleAtoi(s, &v) || v <= 0)) {
      std::fprintf(stderr, "bench attention: bad split count '%s'\n", std::string(s).c_str());
      return 2;
    }
    splits_list.push_back(v);
  }
  std::vector<int> vec_list, unroll_list, threads_list, kv_tile_list;
  if (!ParseBenchCounts("attention", "--attn_vec_bytes", absl::GetFlag(FLAGS_attn_vec_bytes), 0,
                        &vec_list) ||
      !ParseBenchCounts("attention", "--attn_unroll", absl::GetFlag(FLAGS_attn_unroll), 0,
                        &unroll_list) ||
      !ParseBenchCounts("attention", "--attn_threads", absl::GetFlag(FLAGS_attn_threads), 0,
                        &threads_list) ||
      !ParseBenchCounts("attention", "--attn_kv_tile", absl::GetFlag(FLAGS_attn_kv_tile), 0,
                        &kv_tile_list)) {
    return 2;
  }
  struct LoadShape {
    int vec_bytes, unroll, threads, kv_tile;
  };
  std::vector<LoadShape> load_shapes;
  for (int vec : vec_list) {
    for (int unroll : unroll_list) {
      for (int threads : threads_list) {
        for (int kv_tile : kv_tile_list) load_shapes.push_back({vec, unroll, threads, kv_tile});
      }
    }
  }
  std::vector<int> tc_list;  // -1 = auto
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_attn_tc), ',')) {
    int v = -1;
    if (s != "auto" && (!absl::SimpleAtoi(s, &v) || v < 0 || v > 1)) {
      std::fprintf(stderr, "bench attention: bad --attn_tc entry '%s'\n", std::string(s).c_str());
      return 2;
    }
    tc_list.push_back(v);
  }
  std::vector<int> pdl_list;
  if (!ParseBenchCounts("attention", "--attn_pdl", absl::GetFlag(FLAGS_attn_pdl), 0, &pdl_list)) {
    return 2;
  }
  int device_count = 0;
  if (cudaGetDeviceCount(&device_count) != cudaSuccess || device_count == 0) {
    std::fprintf(stderr, "bench attention: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop;
  BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs; batch %d, %d heads / %d kv heads x %d, %d tokens, block %d\n",
              prop.name, prop.multiProcessorCount, batch, heads, kv_heads, head_dim, seq_len,
              block_size);
  codegen::KernelCache cache(codegen::KernelCache::DefaultDir());
  double peak = absl::GetFlag(FLAGS_attn_peak_tbps) * 1e12;
  if (peak <= 0) {
    peak = ProbeReadBandwidth(&cache, prop.multiProcessorCount);
    if (peak <= 0) {
      std::fprintf(stderr, "bench attention: the read probe failed\n");
      return 1;
    }
    std::printf("read bandwidth (probe, this run): %.0f GB/s; of_peak is of that\n", peak / 1e9);
  } else {
    std::printf("bandwidth ceiling (--attn_peak_tbps): %.0f GB/s\n", peak / 1e9);
  }

  const int blocks_per_seq = (seq_len + block_size - 1) / block_size;
  const int64_t num_blocks = int64_t{batch} * blocks_per_seq;
  std::vector<int32_t> tables(num_blocks);
  std::iota(tables.begin(), tables.end(), 0);
  std::shuffle(tables.begin(), tables.end(), std::mt19937(7));
  std::vector<int32_t> lens(batch, seq_len);
  std::vector<uint16_t> q(size_t(batch) * heads * head_dim);
  {
    std::mt19937 rng(11);
    std::normal_distribution<float> d(0.f, 1.f);
    for (auto& h : q) {
      float f = d(rng);
      // fp16 bits of a float in [-4, 4] via the same rounding the runtime uses is overkill for
      // a benchmark: a normal value's truncated half is fine.
      uint32_t u;
      std::memcpy(&u, &f, 4);
      const uint32_t sign = (u >> 16) & 0x8000u;
      int exp = int((u >> 23) & 0xff) - 127 + 15;
      h = exp <= 0 ? uint16_t(sign) : uint16_t(sign | (std::min(exp, 30) << 10) | ((u >> 13) & 0x3ff));
    }
  }
  void *d_q = nullptr, *d_out = nullptr, *d_tables = nullptr, *d_lens = nullptr;
  BENCH_CHECK(cudaMalloc(&d_q, q.size() * 2));
  BENCH_CHECK(cudaMalloc(&d_out, q.size() * 2));
  BENCH_CHECK(cudaMalloc(&d_tables, tables.size() * 4));
  BENCH_CHECK(cudaMalloc(&d_lens, lens.size() * 4));
  BENCH_CHECK(cudaMemcpy(d_q, q.data(), q.size() * 2, cudaMemcpyHostToDevice));
  BENCH_CHECK(cudaMemcpy(d_tables, tables.data(), tables.size() * 4, cudaMemcpyHostToDevice));
  BENCH_CHECK(cudaMemcpy(d_lens, lens.data(), lens.size() * 4, cudaMemcpyHostToDevice));
  // Enough entries for per-channel parameters (per-head and per-layer read a prefix).
  const size_t nparams = size_t(kv_heads) * head_dim;
  std::vector<float> zp(nparams, 0.01f), scale(nparams, 0.02f);
  float *d_zp = nullptr, *d_scale = nullptr;
  BENCH_CHECK(cudaMalloc(reinterpret_cast<void**>(&d_zp), nparams * 4));
  BENCH_CHECK(cudaMalloc(reinterpret_cast<void**>(&d_scale), nparams * 4));
  BENCH_CHECK(cudaMemcpy(d_zp, zp.data(), nparams * 4, cudaMemcpyHostToDevice));
  BENCH_CHECK(cudaMemcpy(d_scale, scale.data(), nparams * 4, cudaMemcpyHostToDevice));
  cudaStream_t stream;
  BENCH_CHECK(cudaStreamCreate(&stream));
  cudaEvent_t start, stop;
  BENCH_CHECK(cudaEventCreate(&start));
  BENCH_CHECK(cudaEventCreate(&stop));

  std::printf("%-11s %-4s %6s %6s %5s %5s %10s %10s %9s %7s %4s %4s %6s %3s\n", "cache", "kern",
              "splits", "vB/U/pf", "regs", "spill", "time_us", "KV_MB", "GB/s", "of_peak", "thr",
              "step", "copies", "pdl");
  for (const BenchCacheKind& kind : kinds) {
    runtime::KvCacheLayout layout;
    layout.num_layers = 1;
    layout.kv_heads = kv_heads;
    layout.head_dim = head_dim;
    layout.block_size = block_size;
    layout.num_blocks = num_blocks;
    ir::KvCacheScheme storage;
    storage.SetPart(ir::KvPart::kKey, kind.k);
    storage.SetPart(ir::KvPart::kValue, kind.v);
    layout.SetStorage(storage);
    const size_t bytes = size_t(num_blocks) * layout.BlockBytes(ir::KvPart::kKey);
    const size_t v_bytes = size_t(num_blocks) * layout.BlockBytes(ir::KvPart::kValue);
    const size_t param_bytes = size_t(num_blocks) * layout.BlockParamBytes(
                                                         layout.online ? ir::KvPart::kKey
                                                                       : ir::KvPart::kValue);
    // Copies of the cache (same contents, one block table) so that the ones a call reads
    // were evicted from the L2 by the calls before it: together at least 3x the L2.
    const size_t copy_bytes = bytes + v_bytes + 2 * param_bytes;
    const int copies = static_cast<int>(std::min<size_t>(
        64, std::max<size_t>(1, (3 * size_t(prop.l2CacheSize) + copy_bytes - 1) / copy_bytes)));
    std::vector<runtime::CudaKvLayer> layers(copies);
    std::vector<void*> buffers;
    auto alloc = [&](size_t n) {
      void* p = nullptr;
      if (cudaMalloc(&p, n) != cudaSuccess) return static_cast<void*>(nullptr);
      buffers.push_back(p);
      return p;
    };
    std::vector<uint8_t> host(std::max(bytes, v_bytes));
    std::vector<uint16_t> params(param_bytes / 2);
    for (size_t i = 0; i < params.size(); i += 2) {
      params[i] = 0x2148;      // scale ~0.0103
      params[i + 1] = 0xBC00;  // zero -1.0
    }
    for (int c = 0; c < copies; ++c) {
      runtime::CudaKvLayer& layer = layers[c];
      layer.k = alloc(bytes);
      layer.v = alloc(v_bytes);
      BENCH_CHECK(layer.k != nullptr && layer.v != nullptr ? cudaSuccess
                                                           : cudaErrorMemoryAllocation);
      FillHost(host, kind.k.dtype == ir::DType::kF16, 1);
      BENCH_CHECK(cudaMemcpy(layer.k, host.data(), bytes, cudaMemcpyHostToDevice));
      FillHost(host, kind.v.dtype == ir::DType::kF16, 2);
      BENCH_CHECK(cudaMemcpy(layer.v, host.data(), v_bytes, cudaMemcpyHostToDevice));
      if (param_bytes > 0) {
        layer.k_params = static_cast<uint16_t*>(alloc(param_bytes));
        layer.v_params = static_cast<uint16_t*>(alloc(param_bytes));
        BENCH_CHECK(layer.k_params != nullptr && layer.v_params != nullptr
                        ? cudaSuccess
                        : cudaErrorMemoryAllocation);
        BENCH_CHECK(cudaMemcpy(layer.k_params, params.data(), param_bytes, cudaMemcpyHostToDevice));
        BENCH_CHECK(cudaMemcpy(layer.v_params, params.data(), param_bytes, cudaMemcpyHostToDevice));
      }
      layer.k_zp = layer.v_zp = d_zp;
      layer.k_scale = layer.v_scale = d_scale;
    }
    host.clear();
    host.shrink_to_fit();
    // Bytes a decode step must read: every session's K and V rows (and online parameters).
    const double kv_bytes =
        double(batch) * double(seq_len) * kv_heads *
        (layout.RowBytes(ir::KvPart::kKey) + layout.RowBytes(ir::KvPart::kValue) +
         (layout.online ? 4 : 0) + (layout.v_online ? 4 : 0));
    for (int tc : tc_list) {
      for (int pdl : pdl_list) {
        for (const LoadShape& ls : load_shapes) {
          const int vec = ls.vec_bytes;
          runtime::CudaAttentionConfig cfg;
          cfg.decode_tc = tc;
          cfg.decode_pdl = pdl != 0;
          cfg.heads = heads;
          cfg.kv_heads = kv_heads;
          cfg.head_dim = head_dim;
          cfg.block_size = block_size;
          cfg.SetStorage(storage);
          cfg.decode_vec_bytes = vec;
          cfg.decode_unroll = ls.unroll;
          cfg.decode_threads = ls.threads;
          cfg.decode_kv_tile = ls.kv_tile;
          cfg.decode_min_blocks = absl::GetFlag(FLAGS_attn_min_blocks);
          cfg.decode_prefetch = absl::GetFlag(FLAGS_attn_prefetch);
          auto attn = runtime::CudaAttention::Create(cfg, &cache);
          if (!attn.ok()) {
            std::printf("%-10s vec %d unroll %d threads %d kv_tile %d: %s\n", kind.name.c_str(),
                        vec, ls.unroll, ls.threads, ls.kv_tile, attn.status().ToString().c_str());
            continue;
          }
          const codegen::ResourceUsage& usage = (*attn)->decode_kernel().compiled.usage;
          for (int splits_req : splits_list) {
            const int splits = splits_req > 0 ? splits_req : (*attn)->DecodeSplits(batch, seq_len);
            const size_t ws_bytes = (*attn)->DecodeWorkspaceBytes(batch, splits);
            void* ws = nullptr;
            if (ws_bytes > 0) BENCH_CHECK(cudaMalloc(&ws, ws_bytes));
            runtime::DecodeArgs a;
            a.q = d_q;
            a.out = d_out;
            a.block_tables = static_cast<int32_t*>(d_tables);
            a.max_blocks_per_seq = blocks_per_seq;
            a.seq_lens = static_cast<int32_t*>(d_lens);
            a.batch = batch;
            a.max_seq_len = seq_len;
            a.scale = 1.0f / std::sqrt(float(head_dim));
            a.splits = splits;
            a.workspace = ws;
            a.workspace_bytes = ws_bytes;
            std::vector<float> times;
            bool failed = false;
            for (int i = 0; i < iters + 5 && !failed; ++i) {
              BENCH_CHECK(cudaEventRecord(start, stream));
              absl::Status s = (*attn)->Decode(layers[i % copies], a, stream);
              BENCH_CHECK(cudaEventRecord(stop, stream));
              BENCH_CHECK(cudaEventSynchronize(stop));
              if (!s.ok()) {
                std::printf("%-10s splits %d: %s\n", kind.name.c_str(), splits,
                            s.ToString().c_str());
                failed = true;
                break;
              }
              float ms = 0;
              BENCH_CHECK(cudaEventElapsedTime(&ms, start, stop));
              if (i >= 5) times.push_back(ms);  // the first calls warm up clocks and caches
            }
            if (ws != nullptr) cudaFree(ws);
            if (failed) continue;
            std::sort(times.begin(), times.end());
            const double med_s = times[times.size() / 2] * 1e-3;
            const codegen::KernelSpec& spec = (*attn)->decode_kernel().rendered.spec;
            const bool is_tc = spec.op == codegen::KernelOp::kDecodeAttentionTc;
            std::printf(
                "%-11s %-4s %6d %3d/%d/%d %5d %5d %10.1f %10.1f %9.1f %6.1f%% %4d %4d %6d %3d\n",
                kind.name.c_str(), is_tc ? "tc" : "simt", splits, spec.vec_bytes, spec.unroll,
                spec.prefetch, usage.registers, usage.spill_store_bytes + usage.spill_load_bytes,
                med_s * 1e6, kv_bytes / 1e6, kv_bytes / med_s / 1e9,
                100.0 * kv_bytes / med_s / peak, spec.threads, spec.kv_tile, copies, pdl);
            std::fflush(stdout);
          }
        }
      }
    }
    for (void* p : buffers) cudaFree(p);
  }
  BENCH_CHECK(cudaDeviceSynchronize());
  return 0;
}

}  // namespace
}  // namespace kvcc::tools

KVCC_BENCH(attention,
           "attention [--attn_batch 64 --attn_seq_len 2048 --attn_heads 32 --attn_kv_heads 32 "
           "--attn_head_dim 128 --attn_caches f16,i8,i4 --attn_splits auto,1,4 --attn_tc 0,1 "
           "--attn_threads 0,64 --attn_unroll 0,2 --attn_kv_tile 0,32 --attn_pdl 0,1]",
           kvcc::tools::RunBenchAttention);
