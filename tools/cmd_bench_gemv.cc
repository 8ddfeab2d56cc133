// `kvcc bench gemv [--gemv-batches 1,2,4,8,16] [--gemv-iters 50] [--gemv-shapes ...]`: the CUDA
// backend's f16 linear as a decode step runs it (f16 activations in, f16 out) at the 7B layer
// shapes (4096x12288 fused qkv, 4096x4096 o, 4096x22016 fused gate/up, 11008x4096 down) and
// the LM head (4096x32000, f32 logits): cuBLASLt, every variant of the decode GEMV
// (codegen/ops_gemv.cuh) and what the backend's rule picks (runtime/cuda/gemv_choice.h), each
// timed as a CUDA graph of --gemv-iters calls, with its weight bytes per call over the read
// bandwidth a probe measures in the same run (the ceiling of a call that only streams its
// weight). Consecutive calls take the next of enough weight copies to span twice the L2, so
// each reads its weight from memory, as a decode step does (runtime/cuda/autotune_timing.h).
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "codegen/ops_kernels.h"
#include "ir/status_macros.h"
#include "runtime/cuda/autotune_timing.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/gemv_choice.h"
#include "tools/bench_cache_kinds.h"
#include "tools/bench_registry.h"
#include "tools/bench_timing.h"
#include "tools/cli_support.h"

ABSL_FLAG(std::string, gemv_batches, "1,2,4,8,16", "bench gemv: token counts to time");
ABSL_FLAG(int32_t, gemv_iters, 50, "bench gemv: calls per CUDA graph");
ABSL_FLAG(std::string, gemv_shapes, "4096x12288,4096x4096,4096x22016,11008x4096,4096x32000",
          "bench gemv: in x out shapes (the last one of the defaults is the LM head, f32 out)");

namespace kvcc::tools {
namespace {

using runtime::Tensor;

absl::Status Bench() {
  std::vector<int> batches;
  if (!ParseBenchCounts("gemv", "--gemv-batches", absl::GetFlag(FLAGS_gemv_batches), 1,
                        &batches)) {
    return absl::InvalidArgumentError("bad --gemv-batches");
  }
  std::vector<std::pair<int64_t, int64_t>> shapes;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_gemv_shapes), ',')) {
    std::vector<absl::string_view> d = absl::StrSplit(s, 'x');
    int64_t in = 0, out = 0;
    if (d.size() != 2 || !absl::SimpleAtoi(d[0], &in) || !absl::SimpleAtoi(d[1], &out) ||
        in <= 0 || out <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("--gemv-shapes: bad entry '", s, "'"));
    }
    shapes.push_back({in, out});
  }
  const int iters = absl::GetFlag(FLAGS_gemv_iters);
  KVCC_ASSIGN_OR_RETURN(auto gpu, runtime::CudaBackend::Create(0));
  gpu->SetHalfActivations(true);
  // The read ceiling: one pass over 2 GiB, far beyond the L2.
  KVCC_ASSIGN_OR_RETURN(auto probe, gpu->Allocate(ir::DType::kF32, {int64_t{1} << 29}));
  KVCC_ASSIGN_OR_RETURN(double probe_s,
                        TimeCalls(*gpu, 10, [&]() { return gpu->ReadAll(probe); }));
  const double read_bw = probe.NumBytes() / probe_s;
  const auto& variants = codegen::GemvVariants();
  std::printf("read probe: %.2f TB/s; graph-timed us per call (%% = weight bytes / time / probe)\n",
              read_bw / 1e12);
  std::string head = absl::StrFormat("%-11s %5s %15s", "in x out", "batch", "cuBLASLt");
  for (const auto& v : variants) absl::StrAppend(&head, absl::StrFormat(" %15s", v.Suffix()));
  absl::StrAppend(&head, absl::StrFormat(" %15s %6s %s", "rule", "vs Lt", "(rule's variant)"));
  std::printf("%s\n", head.c_str());
  for (auto [in, out] : shapes) {
    const double bytes = 2.0 * in * out;
    const int64_t copies = std::clamp<int64_t>(
        static_cast<int64_t>((runtime::L2BustBytes() + bytes - 1) / bytes), 1, 64);
    std::vector<Tensor> ws;
    for (int64_t c = 0; c < copies; ++c) {
      KVCC_ASSIGN_OR_RETURN(auto w, gpu->Allocate(ir::DType::kF16, {out, in}));
      KVCC_RETURN_IF_ERROR(gpu->FillNormal(w, 3 + c, 0.0f, 0.02f));
      ws.push_back(std::move(w));
    }
    const bool head_shape = out == 32000;
    for (int t : batches) {
      KVCC_ASSIGN_OR_RETURN(auto x, gpu->Allocate(ir::DType::kF16, {t, in}));
      KVCC_RETURN_IF_ERROR(gpu->FillNormal(x, 4, 0.0f, 1.0f));
      auto timed = [&](int choice) -> absl::StatusOr<double> {
        gpu->set_gemv_choice(choice);
        int64_t call = 0;
        return TimeGraph(*gpu, iters, [&]() -> absl::Status {
          const Tensor& w = ws[call++ % copies];
          return (head_shape ? gpu->LmHead(x, w) : gpu->Linear(x, w, nullptr)).status();
        });
      };
      auto cell = [&](const absl::StatusOr<double>& s) {
        return s.ok() ? absl::StrFormat(" %8.1f (%3.0f%%)", *s * 1e6, 100.0 * bytes / *s / read_bw)
                      : absl::StrFormat(" %15s", "-");
      };
      const absl::StatusOr<double> lt = timed(runtime::kGemvOff);
      std::string line =
          absl::StrFormat("%-11s %5d%s", absl::StrCat(in, "x", out), t, cell(lt));
      for (int v = 0; v < static_cast<int>(variants.size()); ++v) {
        if (t > variants[v].max_tokens()) {
          absl::StrAppend(&line, absl::StrFormat(" %15s", "-"));
          continue;
        }
        absl::StrAppend(&line, cell(timed(v)));
      }
      const absl::StatusOr<double> rule = timed(runtime::kGemvByRule);
      const int picked = gpu->DefaultGemvVariant(t, in, out, ir::DType::kF16);
      absl::StrAppend(&line, cell(rule),
                      lt.ok() && rule.ok() ? absl::StrFormat(" %5.2fx", *lt / *rule) : " -",
                      " (", picked >= 0 ? variants[picked].Suffix() : "cuBLASLt", ")");
      std::printf("%s\n", line.c_str());
      if (!lt.ok()) std::printf("  cuBLASLt: %s\n", std::string(lt.status().message()).c_str());
      gpu->set_gemv_choice(runtime::kGemvByRule);
    }
  }
  return absl::OkStatus();
}

int RunBenchGemv(const std::vector<std::string>& args) {
  if (!args.empty()) {
    std::fprintf(stderr, "usage: kvcc bench gemv [--gemv-batches 1,2,4,8,16] [--gemv-iters 50]\n");
    return 2;
  }
  if (auto s = Bench(); !s.ok()) return Fail("bench gemv", s);
  return 0;
}

}  // namespace

KVCC_BENCH(gemv,
           "gemv [--gemv-batches 1,2,4,8,16] [--gemv-iters 50] [--gemv-shapes 4096x12288,...]: "
           "decode GEMV vs cuBLASLt f16 at the 7B shapes (CUDA graphs)",
           RunBenchGemv);

}  // namespace kvcc::tools
