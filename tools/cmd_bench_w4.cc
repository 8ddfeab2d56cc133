// `kvcc bench w4 [--w4-batches 1,2,4,8,16,32,64,2048] [--w4-group 128] [--w4-iters 50]`: the
// CUDA backend's 4-bit linear (runtime/cuda/cuda_w4_linear) against its cuBLASLt f16 linear at
// the 7B layer shapes (4096x12288 fused qkv, 4096x4096, 4096x22016 fused gate/up, 11008x4096),
// side by side, both with f16 activations as a model runs them: time per call, speedup, and the
// share of the ceiling the 4-bit call reaches: for the memory-bound batches (up to 64 tokens)
// its packed weight bytes per call over the read bandwidth a probe measures in the same run,
// beyond that its FLOPs over the tensor-core peak (and cuBLASLt's share of the bandwidth).
// The weights are packed on the host as `kvcc compile` stores them and, with --w4-cold (the
// default), cycled through enough copies that no call finds its weight in the L2 (a decode
// step's linears are all different weights).
// Two timings per call: "call" is back-to-back eager calls with the stream drained around the
// batch (host launch gaps included), "graph" replays a CUDA graph of --w4-iters calls (what a
// captured decode step pays: every kernel of the call, no host gaps). With --w4-sweep the
// packed kernels are also timed one by one (graph): the stripe kernels at 1-4 CTAs per SM, zero
// subtracted and folded, the zero-folded stream kernels at 1 and 2 strips per CTA, the split-K
// mma kernels.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
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
#include "runtime/w4_repack.h"
#include "tools/bench_registry.h"
#include "tools/bench_timing.h"
#include "ir/status_macros.h"
#include "tools/cli_support.h"

ABSL_FLAG(std::string, w4_batches, "1,2,4,8,16,32,64,2048", "bench w4: token counts to time");
ABSL_FLAG(int64_t, w4_group, 128, "bench w4: group size");
ABSL_FLAG(int32_t, w4_iters, 50, "bench w4: timed calls per configuration");
ABSL_FLAG(bool, w4_sweep, true, "bench w4: also time each packed kernel variant (graph)");
ABSL_FLAG(bool, w4_cold, true,
          "bench w4: cycle every call through enough weight copies that none is read from the L2");
ABSL_FLAG(double, w4_peak_tflops, 989.0,
          "bench w4: dense f16 tensor-core peak in TFLOP/s (H200 SXM: 989)");

namespace kvcc::tools {
namespace {

using runtime::Tensor;

// Enough copies of a weight of `bytes` that cycling through them reads more than the L2 holds
// (50 MiB on the H100/H200) between two uses of one copy, as a decode step does: its linears
// are all different weights.
int ColdCopies(double bytes, bool cold) {
  if (!cold) return 1;
  return static_cast<int>(std::min(64.0, std::max(1.0, std::ceil(160e6 / bytes))));
}

absl::Status Bench() {
  KVCC_ASSIGN_OR_RETURN(auto gpu, runtime::CudaBackend::Create(0));
  // The activations of a half-activation model (every CUDA model's): f16 in and out of both the
  // cuBLASLt f16 linear and the 4-bit one.
  gpu->SetHalfActivations(true);
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
  const bool cold = absl::GetFlag(FLAGS_w4_cold);
  const double peak_flops = absl::GetFlag(FLAGS_w4_peak_tflops) * 1e12;
  // The read ceiling: one pass over 2 GiB, far beyond the L2.
  double read_bw = 0;
  {
    KVCC_ASSIGN_OR_RETURN(auto probe, gpu->Allocate(ir::DType::kF32, {int64_t{1} << 29}));
    KVCC_ASSIGN_OR_RETURN(double probe_s,
                          TimeCalls(*gpu, 10, [&]() { return gpu->ReadAll(probe); }));
    read_bw = probe.NumBytes() / probe_s;
  }
  std::printf("read probe: %.2f TB/s; tensor-core peak %.0f TFLOP/s (--w4-peak-tflops); %s\n",
              read_bw / 1e12, peak_flops / 1e12,
              cold ? "weights cycled through copies beyond the L2 (--w4-cold)"
                   : "one weight copy, L2-warm (--w4-cold=false)");
  const int64_t shapes[][2] = {{4096, 12288}, {4096, 4096}, {4096, 22016}, {11008, 4096}};
  const bool sweep = absl::GetFlag(FLAGS_w4_sweep);
  KVCC_ASSIGN_OR_RETURN(auto w4k, runtime::CudaW4Linear::Create(gpu->context(), nullptr));
  std::printf("%-11s %5s %8s %8s %8s %8s %8s %8s %8s\n", "in x out", "batch", "f16 call",
              "w4 call", "f16 grph", "w4 grph", "speedup", "w4 ceil", "f16 bw");
  if (sweep) {
    std::printf(
        "  sweep (graph us): stripe sub 1 2 3 4 CTAs/SM | stripe folded 1 2 3 4 | stream folded "
        "s1 s2 | mma\n");
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
    // The weight packed on the host as `kvcc compile` stores it, uploaded as the words a
    // compiled artifact's upload holds (QuantizedWeight::packed).
    const runtime::QuantizedWeight hw{&codes, &scales, &zeros, group};
    KVCC_ASSIGN_OR_RETURN(runtime::PackedW4 packed, runtime::PackW4(hw, "bench"));
    Tensor hwords = Tensor::HostZeros(ir::DType::kI32, {out, in / 8});
    Tensor hsz = Tensor::HostZeros(ir::DType::kI32, {out, groups});
    std::memcpy(hwords.raw(), packed.codes.data(), packed.codes.size() * 4);
    std::memcpy(hsz.raw(), packed.sz.data(), packed.sz.size() * 4);
    // Packed codes plus one scale/zero word per row and group.
    const double w4_bytes = out * in / 2.0 + out * groups * 4.0;
    const double f16_bytes = out * in * 2.0;
    const int n4 = ColdCopies(w4_bytes, cold), n16 = ColdCopies(f16_bytes, cold);
    std::vector<Tensor> dwords, dsz, w16s;
    std::vector<runtime::QuantizedWeight> qws;
    for (int c = 0; c < n4; ++c) {
      KVCC_ASSIGN_OR_RETURN(auto dw, gpu->FromHost(hwords));
      KVCC_ASSIGN_OR_RETURN(auto ds, gpu->FromHost(hsz));
      dwords.push_back(std::move(dw));
      dsz.push_back(std::move(ds));
    }
    for (int c = 0; c < n4; ++c) qws.push_back({&dwords[c], &dsz[c], nullptr, group, true});
    for (int c = 0; c < n16; ++c) {
      KVCC_ASSIGN_OR_RETURN(auto w16, gpu->Allocate(ir::DType::kF16, {out, in}));
      KVCC_RETURN_IF_ERROR(gpu->FillNormal(w16, 3 + c, 0.0f, 0.02f));
      w16s.push_back(std::move(w16));
    }
    std::printf("%lldx%lld: %d W4 copies (%.1f MB each), %d f16 copies (%.1f MB each)\n",
                static_cast<long long>(in), static_cast<long long>(out), n4, w4_bytes / 1e6, n16,
                f16_bytes / 1e6);
    for (int64_t t : batches) {
      KVCC_ASSIGN_OR_RETURN(auto x32, gpu->Allocate(ir::DType::kF32, {t, in}));
      KVCC_RETURN_IF_ERROR(gpu->FillNormal(x32, 4, 0.0f, 1.0f));
      KVCC_ASSIGN_OR_RETURN(auto x, gpu->Cast(x32, ir::DType::kF16));
      int i16 = 0, i4 = 0;
      auto f16_call = [&]() -> absl::Status {
        return gpu->Linear(x, w16s[i16++ % n16], nullptr).status();
      };
      auto w4_call = [&]() -> absl::Status {
        return gpu->QuantizedLinear(x, qws[i4++ % n4], nullptr).status();
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
      std::printf("%-11s %5lld %8.1f %8.1f %8s %8s %7.2fx %6.1f%%%s %6.1f%%%s\n",
                  absl::StrCat(in, "x", out).c_str(), static_cast<long long>(t), f16 * 1e6,
                  w4 * 1e6, Us(f16g).c_str(), Us(w4g).c_str(), f16t / w4t, 100.0 * share,
                  memory_bound ? "bw" : "tc", 100.0 * f16_bytes / f16t / read_bw,
                  graphs ? "" : " (call timings: no graph)");
      if (!graphs) {
        std::printf("  graph capture: %s / %s\n", std::string(f16g.status().message()).c_str(),
                    std::string(w4g.status().message()).c_str());
      }
      if (sweep && t <= runtime::kW4MmaMaxTokens) {
        std::vector<runtime::PackedW4Device> pws;
        for (const auto& q : qws) pws.push_back(runtime::CudaW4Linear::Adopt(q));
        KVCC_ASSIGN_OR_RETURN(auto y, gpu->Allocate(ir::DType::kF32, {t, out}));
        KVCC_ASSIGN_OR_RETURN(auto y16, gpu->Allocate(ir::DType::kF16, {t, out}));
        std::string line = "  sweep";
        auto one = [&](runtime::W4KernelChoice c) {
          w4k->set_choice(c);
          Tensor* yout = w4k->Streams(t, group) ? &y16 : &y;
          int k = 0;
          const absl::StatusOr<double> g = TimeGraph(*gpu, iters, [&]() {
            const int at = k++ % n4;
            return w4k->PackedLinear(x, pws[at], qws[at], nullptr, yout);
          });
          absl::StrAppend(&line, " ", Us(g));
        };
        for (bool fold : {false, true}) {
          for (int per_sm : {1, 2, 3, 4}) {
            if (t <= runtime::kW4StripeMaxTokens) {
              one({runtime::W4KernelChoice::kStripe, 0, fold, per_sm});
            } else {
              absl::StrAppend(&line, " -");
            }
          }
          absl::StrAppend(&line, " |");
        }
        for (int s : {1, 2}) one({runtime::W4KernelChoice::kStream, s, true});
        absl::StrAppend(&line, " |");
        one({runtime::W4KernelChoice::kMma, 0});
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
