// `kvcc bench w4 [--w4-batches 1,2,4,8,16,32,64,2048] [--w4-group 128] [--w4-iters 50]`: the
// CUDA backend's 4-bit linear (runtime/cuda/cuda_w4_linear) against its cuBLASLt f16 linear at
// the 7B layer shapes (4096x12288 fused qkv, 4096x4096, 4096x22016 fused gate/up, 11008x4096),
// side by side: time per call, speedup, and the share of the ceiling the 4-bit call reaches:
// for the memory-bound batches (up to 64 tokens) its packed weight bytes per call over the read
// bandwidth a probe measures in the same run, beyond that its FLOPs over the tensor-core peak.
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "ir/group_quant.h"
#include "ir/half.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_context.h"
#include "runtime/cuda/cuda_w4_linear.h"
#include "tools/bench_registry.h"
#include "ir/status_macros.h"
#include "tools/cli_support.h"

ABSL_FLAG(std::string, w4_batches, "1,2,4,8,16,32,64,2048", "bench w4: token counts to time");
ABSL_FLAG(int64_t, w4_group, 128, "bench w4: group size");
ABSL_FLAG(int32_t, w4_iters, 50, "bench w4: timed calls per configuration");
ABSL_FLAG(double, w4_peak_tflops, 989.0,
          "bench w4: dense f16 tensor-core peak in TFLOP/s (H200 SXM: 989)");

namespace kvcc::tools {
namespace {

using runtime::Tensor;

// Mean seconds per call of fn over `iters` calls after warm-up (the stream drained around).
template <typename F>
absl::StatusOr<double> Time(runtime::CudaBackend& gpu, int iters, F fn) {
  for (int i = 0; i < 3; ++i) KVCC_RETURN_IF_ERROR(fn());
  KVCC_RETURN_IF_ERROR(gpu.Synchronize());
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) KVCC_RETURN_IF_ERROR(fn());
  KVCC_RETURN_IF_ERROR(gpu.Synchronize());
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
}

absl::Status Bench() {
  KVCC_ASSIGN_OR_RETURN(auto gpu, runtime::CudaBackend::Create(0));
  std::vector<int64_t> batches;
  for (absl::string_view b : absl::StrSplit(absl::GetFlag(FLAGS_w4_batches), ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(b, &v) || v <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("--w4-batches: bad entry '", b, "'"));
    }
    batches.push_back(v);
  }
  const int64_t group = absl::GetFlag(FLAGS_w4_group);
  const int iters = absl::GetFlag(FLAGS_w4_iters);
  const double peak_flops = absl::GetFlag(FLAGS_w4_peak_tflops) * 1e12;
  // The read ceiling: one pass over 2 GiB, far beyond the L2.
  KVCC_ASSIGN_OR_RETURN(auto probe, gpu->Allocate(ir::DType::kF32, {int64_t{1} << 29}));
  KVCC_ASSIGN_OR_RETURN(double probe_s, Time(*gpu, 10, [&]() { return gpu->ReadAll(probe); }));
  const double read_bw = probe.NumBytes() / probe_s;
  std::printf("read probe: %.2f TB/s; tensor-core peak %.0f TFLOP/s (--w4-peak-tflops)\n",
              read_bw / 1e12, peak_flops / 1e12);
  const int64_t shapes[][2] = {{4096, 12288}, {4096, 4096}, {4096, 22016}, {11008, 4096}};
  std::printf("%-12s %6s %12s %12s %8s %12s\n", "in x out", "batch", "f16 us", "w4 us",
              "speedup", "w4 ceiling");
  std::mt19937 rng(1);
  for (const auto& s : shapes) {
    const int64_t in = s[0], out = s[1], groups = in / group;
    if (in % group != 0) return absl::InvalidArgumentError("--w4-group must divide 4096 and 11008");
    Tensor codes = Tensor::HostZeros(ir::DType::kI4, {out, in});
    Tensor zeros = Tensor::HostZeros(ir::DType::kI4, {out, groups});
    Tensor scales = Tensor::HostZeros(ir::DType::kF16, {out, groups});
    for (int64_t i = 0; i < codes.NumBytes(); ++i) static_cast<uint8_t*>(codes.raw())[i] = rng();
    for (int64_t i = 0; i < zeros.NumBytes(); ++i) static_cast<uint8_t*>(zeros.raw())[i] = rng();
    for (int64_t i = 0; i < out * groups; ++i) {
      static_cast<uint16_t*>(scales.raw())[i] = ir::FloatToHalf(0.001f * (1 + rng() % 8));
    }
    KVCC_ASSIGN_OR_RETURN(auto dc, gpu->FromHost(codes));
    KVCC_ASSIGN_OR_RETURN(auto dz, gpu->FromHost(zeros));
    KVCC_ASSIGN_OR_RETURN(auto ds, gpu->FromHost(scales));
    KVCC_ASSIGN_OR_RETURN(auto w16, gpu->Allocate(ir::DType::kF16, {out, in}));
    KVCC_RETURN_IF_ERROR(gpu->FillNormal(w16, 3, 0.0f, 0.02f));
    const runtime::QuantizedWeight qw{&dc, &ds, &dz, group};
    // Packed codes plus one scale/zero word per row and group.
    const double w4_bytes = out * in / 2.0 + out * groups * 4.0;
    for (int64_t t : batches) {
      KVCC_ASSIGN_OR_RETURN(auto x, gpu->Allocate(ir::DType::kF32, {t, in}));
      KVCC_RETURN_IF_ERROR(gpu->FillNormal(x, 4, 0.0f, 1.0f));
      KVCC_ASSIGN_OR_RETURN(double f16, Time(*gpu, iters, [&]() -> absl::Status {
                              return gpu->Linear(x, w16, nullptr).status();
                            }));
      KVCC_ASSIGN_OR_RETURN(double w4, Time(*gpu, iters, [&]() -> absl::Status {
                              return gpu->QuantizedLinear(x, qw, nullptr).status();
                            }));
      const bool memory_bound = t <= runtime::kW4MmaMaxTokens;
      const double share = memory_bound ? w4_bytes / w4 / read_bw : 2.0 * t * in * out / w4 / peak_flops;
      std::printf("%-12s %6lld %12.1f %12.1f %7.2fx %7.1f%% %s\n",
                  absl::StrCat(in, "x", out).c_str(), static_cast<long long>(t), f16 * 1e6,
                  w4 * 1e6, f16 / w4, 100.0 * share, memory_bound ? "bw" : "tc");
    }
  }
  return absl::OkStatus();
}

int RunBenchW4(const std::vector<std::string>& args) {
  if (!args.empty()) {
    std::fprintf(stderr, "usage: kvcc bench w4 [--w4-batches ...] [--w4-group 128]\n");
    return 2;
  }
  if (auto s = Bench(); !s.ok()) return Fail("bench w4", s);
  return 0;
}

}  // namespace

KVCC_BENCH(w4,
           "w4 [--w4-batches 1,2,4,8,16,32,64,2048] [--w4-group 128] [--w4-iters 50]: 4-bit vs "
           "f16 linear at the 7B shapes (CUDA)",
           RunBenchW4);

}  // namespace kvcc::tools
