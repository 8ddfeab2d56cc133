// `kvcc bench w4 [--w4-batches 1,2,4,8,16,32,64,2048] [--w4-group 128] [--w4-iters 50]`: the
// CUDA backend's 4-bit linear (runtime/cuda/cuda_w4_linear) against its cuBLASLt f16 linear at
// the 7B layer shapes (4096x12288 fused qkv, 4096x4096, 4096x22016 fused gate/up, 11008x4096),
// side by side: time per call, speedup, and the share of the ceiling the 4-bit call reaches:
// for the memory-bound batches (up to 64 tokens) its packed weight bytes per call over the read
// bandwidth a probe measures in the same run, beyond that its FLOPs over the tensor-core peak.
// Two timings per call: "call" is back-to-back eager calls with the stream drained around the
// batch (host launch gaps included), "graph" replays a CUDA graph of --w4-iters calls (what a
// captured decode step pays: every kernel of the call, no host gaps). With --w4-sweep the
// packed kernels are also timed one by one (graph): the split-K mma kernels and the stream
// kernels at 1 and 2 strips per CTA, with f32 and f16 activations.
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "ir/group_quant.h"
#include "ir/half.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_context.h"
#include "runtime/cuda/cuda_w4_linear.h"
#include "tools/bench_registry.h"
#include "tools/bench_timing.h"
#include "ir/status_macros.h"
#include "tools/cli_support.h"

ABSL_FLAG(std::string, w4_batches, "1,2,4,8,16,32,64,2048", "bench w4: token counts to time");
ABSL_FLAG(int64_t, w4_group, 128, "bench w4: group size");
ABSL_FLAG(int32_t, w4_iters, 50, "bench w4: timed calls per configuration");
ABSL_FLAG(bool, w4_sweep, true, "bench w4: also time each packed kernel variant (graph)");
ABSL_FLAG(double, w4_peak_tflops, 989.0,
          "bench w4: dense f16 tensor-core peak in TFLOP/s (H200 SXM: 989)");

namespace kvcc::tools {
namespace {

using runtime::Tensor;

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
  KVCC_ASSIGN_OR_RETURN(double probe_s, TimeCalls(*gpu, 10, [&]() { return gpu->ReadAll(probe); }));
  const double read_bw = probe.NumBytes() / probe_s;
  std::printf("read probe: %.2f TB/s; tensor-core peak %.0f TFLOP/s (--w4-peak-tflops)\n",
              read_bw / 1e12, peak_flops / 1e12);
  const int64_t shapes[][2] = {{4096, 12288}, {4096, 4096}, {4096, 22016}, {11008, 4096}};
  const bool sweep = absl::GetFlag(FLAGS_w4_sweep);
  KVCC_ASSIGN_OR_RETURN(auto w4k, runtime::CudaW4Linear::Create(gpu->context(), nullptr));
  std::printf("%-11s %5s %8s %8s %8s %8s %8s %8s %7s %s\n", "in x out", "batch", "f16 call",
              "w4 call", "f16 grph", "w4 grph", "speedup", "ceiling", "", "");
  if (sweep) {
    std::printf("  sweep (graph us): mma | stream f32 s1 s2 | stream f16 s1 s2 | folded f16 s1 s2 | cast+f16 auto\n");
  }
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
      auto f16_call = [&]() -> absl::Status { return gpu->Linear(x, w16, nullptr).status(); };
      auto w4_call = [&]() -> absl::Status {
        return gpu->QuantizedLinear(x, qw, nullptr).status();
      };
      KVCC_ASSIGN_OR_RETURN(double f16, TimeCalls(*gpu, iters, f16_call));
      KVCC_ASSIGN_OR_RETURN(double w4, TimeCalls(*gpu, iters, w4_call));
      const absl::StatusOr<double> f16g = TimeGraph(*gpu, iters, f16_call);
      const absl::StatusOr<double> w4g = TimeGraph(*gpu, iters, w4_call);
      // The ratio and ceiling of the graph timings where both captured, else of the calls.
      const bool graphs = f16g.ok() && w4g.ok();
      const double f16t = graphs ? *f16g : f16, w4t = graphs ? *w4g : w4;
      const bool memory_bound = t <= runtime::kW4MmaMaxTokens;
      const double share =
          memory_bound ? w4_bytes / w4t / read_bw : 2.0 * t * in * out / w4t / peak_flops;
      std::printf("%-11s %5lld %8.1f %8.1f %8s %8s %7.2fx %6.1f%% %s%s\n",
                  absl::StrCat(in, "x", out).c_str(), static_cast<long long>(t), f16 * 1e6,
                  w4 * 1e6, Us(f16g).c_str(), Us(w4g).c_str(), f16t / w4t, 100.0 * share,
                  memory_bound ? "bw" : "tc", graphs ? "" : " (call timings: no graph)");
      if (!graphs) {
        std::printf("  graph capture: %s / %s\n", std::string(f16g.status().message()).c_str(),
                    std::string(w4g.status().message()).c_str());
      }
      if (sweep && t <= runtime::kW4MmaMaxTokens) {
        KVCC_ASSIGN_OR_RETURN(const runtime::PackedW4Device* pw, w4k->Packed(qw));
        if (pw == nullptr) return absl::InternalError("bench w4: the weight did not pack");
        KVCC_ASSIGN_OR_RETURN(auto y, gpu->Allocate(ir::DType::kF32, {t, out}));
        KVCC_ASSIGN_OR_RETURN(auto y16, gpu->Allocate(ir::DType::kF16, {t, out}));
        KVCC_ASSIGN_OR_RETURN(auto x16, gpu->Cast(x, ir::DType::kF16));
        std::string line = "  sweep";
        auto one = [&](runtime::W4KernelChoice c, const Tensor& xin) {
          w4k->set_choice(c);
          Tensor* yout = xin.dtype() == ir::DType::kF16 ? &y16 : &y;
          const absl::StatusOr<double> g = TimeGraph(
              *gpu, iters, [&]() { return w4k->PackedLinear(xin, *pw, qw, nullptr, yout); });
          absl::StrAppend(&line, " ", Us(g));
        };
        one({runtime::W4KernelChoice::kMma, 0}, x);
        absl::StrAppend(&line, " |");
        const bool stream = t <= runtime::kW4StreamMaxTokens;
        for (const Tensor* xin : {&x, &x16}) {
          for (int s : {1, 2}) {
            if (stream) {
              one({runtime::W4KernelChoice::kStream, s, false}, *xin);
            } else {
              absl::StrAppend(&line, " -");
            }
          }
          if (xin == &x) absl::StrAppend(&line, " |");
        }
        absl::StrAppend(&line, " | folded f16");
        for (int s : {1, 2}) {
          if (stream) {
            one({runtime::W4KernelChoice::kStream, s, true}, x16);
          } else {
            absl::StrAppend(&line, " -");
          }
        }
        if (stream) {
          // The cast of f32 activations to f16 in the same graph, then the f16 kernel.
          absl::StrAppend(&line, " | cast+f16");
          w4k->set_choice({runtime::W4KernelChoice::kStream, 0});
          const absl::StatusOr<double> g = TimeGraph(*gpu, iters, [&]() -> absl::Status {
            KVCC_ASSIGN_OR_RETURN(auto xh, gpu->Cast(x, ir::DType::kF16));
            return w4k->PackedLinear(xh, *pw, qw, nullptr, &y16);
          });
          absl::StrAppend(&line, " ", Us(g));
        }
        w4k->set_choice({});
        std::printf("%s\n", line.c_str());
      }
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
