#include "runtime/cuda/gemm_autotune.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <limits>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"
#include "codegen/ops_kernels.h"
#include "codegen/ops_params.h"
#include "runtime/cuda/autotune_timing.h"
#include "runtime/cuda/cublaslt_gemm.h"
#include "runtime/cuda/cuda_context.h"
#include "runtime/cuda/gemv_choice.h"
#include "runtime/cuda/kernel_plan.h"
#include "runtime/cuda/typed_kernel.h"

namespace kvcc::runtime {
namespace {

constexpr absl::string_view kTuner = "GEMM autotune";
// Operands are filled with 0x3c bytes (about 1.06 in f16): an all-zero operand can run faster
// than real data.
constexpr int kFill = 0x3c;

}  // namespace

bool GemmShape::operator<(const GemmShape& o) const {
  return std::make_tuple(n, k, static_cast<int>(dtype)) <
         std::make_tuple(o.n, o.k, static_cast<int>(o.dtype));
}

std::vector<GemmShape> PlanGemmShapes(const ir::Module& module) {
  std::vector<GemmShape> shapes;
  std::set<GemmShape> seen;
  for (const auto& node : module.graph.nodes()) {
    const bool linear = node->op == ir::op::kLinear && node->IntOr("group_size", 0) == 0;
    if (!linear && node->op != ir::op::kLmHead) continue;
    if (node->inputs.size() < 2 || node->input(1) == nullptr) continue;
    const ir::TensorType& w = node->input(1)->type;
    if (w.shape.size() != 2) continue;
    GemmShape s{w.shape[0], w.shape[1],
                w.dtype == ir::DType::kBF16 ? ir::DType::kBF16 : ir::DType::kF16};
    if (seen.insert(s).second) shapes.push_back(s);
  }
  return shapes;
}

std::vector<int64_t> GemmTokenBuckets(int max_batch, int64_t prefill_chunk) {
  std::set<int64_t> m;
  for (int64_t b = 1; b < max_batch; b *= 2) m.insert(b);
  if (max_batch > 0) m.insert(max_batch);
  if (prefill_chunk > 0) m.insert(prefill_chunk);
  return std::vector<int64_t>(m.begin(), m.end());
}

absl::Status AutotuneGemms(const std::vector<GemmShape>& shapes,
                           const GemmAutotuneOptions& options, KernelTuning* tuning) {
  if (options.max_batch <= 0 || options.candidates <= 0 || options.iters <= 0 ||
      options.rounds <= 0) {
    return absl::InvalidArgumentError(
        "GEMM autotune: max batch, candidates, iters and rounds must be positive");
  }
  KVCC_ASSIGN_OR_RETURN(auto ctx, CudaContext::Create(0));
  KVCC_ASSIGN_OR_RETURN(auto gemm, CublasLtGemm::Create(ctx));
  tuning->cublaslt_version = CublasLtGemm::LibraryVersion();
  const std::vector<int64_t> buckets = GemmTokenBuckets(options.max_batch, options.prefill_chunk);
  const int64_t max_m = buckets.back();
  cudaStream_t stream = ctx->stream();
  // The decode GEMV's variants, [f16, bf16][variant], from the ops program the backend runs.
  const auto& variants = codegen::GemvVariants();
  std::vector<TypedKernel<kernels::GemvParams>> gemv[2];
  KVCC_ASSIGN_OR_RETURN(codegen::BuiltOpsKernels ops,
                        codegen::BuildOpsKernels(OpsKernelSpecFor(ctx->target()), nullptr));
  KVCC_ASSIGN_OR_RETURN(cudaLibrary_t library, ctx->LoadLibrary(ops.compiled.cubin));
  for (int w = 0; w < 2; ++w) {
    for (const codegen::GemvVariant& v : variants) {
      TypedKernel<kernels::GemvParams> k;
      k.name = absl::StrCat("kvcc_gemv_", w == 0 ? "f16" : "bf16", "_", v.Suffix());
      KVCC_ASSIGN_OR_RETURN(k.fn, ctx->GetKernel(library, k.name));
      gemv[w].push_back(std::move(k));
    }
  }
  // Weights repeated by a timing loop would stay in L2; in a step each linear's weights come
  // from memory once. So each call takes the next of enough copies to span twice the L2
  // (a model whose weights fit in L2 twice over is timed warm, as it runs).
  for (const GemmShape& shape : shapes) {
    AutotuneScratch w, x, y;
    const int64_t w_bytes = shape.n * shape.k * 2;
    const int64_t copies = std::clamp<int64_t>((L2BustBytes() + w_bytes - 1) / w_bytes, 1, 64);
    KVCC_RETURN_IF_ERROR(w.Allocate(static_cast<size_t>(w_bytes * copies), kFill, kTuner));
    KVCC_RETURN_IF_ERROR(x.Allocate(static_cast<size_t>(max_m * shape.k * 2), kFill, kTuner));
    KVCC_RETURN_IF_ERROR(y.Allocate(static_cast<size_t>(max_m * shape.n * 4), kFill, kTuner));
    auto* out = static_cast<float*>(y.p);
    for (int64_t m : buckets) {
      KVCC_ASSIGN_OR_RETURN(std::vector<GemmCandidate> offered,
                            gemm->Heuristics(m, shape.k, shape.n, shape.dtype,
                                             options.candidates));
      if (offered.empty()) {
        return absl::UnimplementedError(absl::StrCat("GEMM autotune: cuBLASLt offers no "
                                                     "algorithm for ", m, "x", shape.k, " . ",
                                                     shape.k, "x", shape.n));
      }
      // Index 0: the heuristic's own descriptor, as an untuned run uses it. The others are
      // rebuilt from their attributes, as a tuned run rebuilds them; one that does not check
      // on this device is not a candidate.
      std::vector<GemmCandidate> timed = {offered[0]};
      for (size_t i = 1; i < offered.size(); ++i) {
        if (offered[i].config == offered[0].config) continue;
        auto rebuilt = gemm->Rebuild(offered[i].config, m, shape.k, shape.n, shape.dtype);
        if (rebuilt.ok()) timed.push_back(*rebuilt);
      }
      std::vector<double> best(timed.size(), std::numeric_limits<double>::infinity());
      for (int r = 0; r < options.rounds; ++r) {
        for (size_t i = 0; i < timed.size(); ++i) {
          int64_t call = 0;
          KVCC_ASSIGN_OR_RETURN(double us, TimeCalls(stream, 2, options.iters, [&] {
                                  const void* wi =
                                      static_cast<const uint8_t*>(w.p) + (call++ % copies) * w_bytes;
                                  return gemm->MatmulWith(timed[i], x.p, wi, out, m, shape.k,
                                                          shape.n, shape.dtype);
                                }, kTuner));
          best[i] = std::min(best[i], us);
        }
      }
      size_t win = 0;
      for (size_t i = 1; i < timed.size(); ++i) {
        if (best[i] < best[win]) win = i;
      }
      // The GEMV variants that take the batch, each against the same weight copies.
      double gemv_best = std::numeric_limits<double>::infinity();
      int gemv_win = -1;
      for (int v = 0; v < static_cast<int>(variants.size()); ++v) {
        // The scratch buffers are 16-byte aligned.
        if (!GemvVariantTakes(variants[v], m, shape.k, shape.n, true)) continue;
        kernels::GemvParams p{};
        p.x = x.p;
        p.y = out;
        p.tokens = static_cast<int>(m);
        p.in = static_cast<int>(shape.k);
        p.out = static_cast<int>(shape.n);
        const int wi = shape.dtype == ir::DType::kBF16 ? 1 : 0;
        const dim3 grid(GemvGrid(variants[v], shape.n));
        const auto& kernel = gemv[wi][v];
        for (int r = 0; r < options.rounds; ++r) {
          int64_t call = 0;
          KVCC_ASSIGN_OR_RETURN(double us, TimeCalls(stream, 2, options.iters, [&] {
                                  p.w = static_cast<const uint8_t*>(w.p) +
                                        (call++ % copies) * w_bytes;
                                  return ctx->Launch(kernel, grid,
                                                     dim3(codegen::kGemvThreads), p);
                                }, kTuner));
          if (us < gemv_best) {
            gemv_best = us;
            gemv_win = v;
          }
        }
      }
      GemmTuning g;
      g.m = m;
      g.n = shape.n;
      g.k = shape.k;
      g.dtype = shape.dtype;
      g.heuristic_us = best[0];
      g.candidates = static_cast<int>(timed.size());
      g.heuristic = win == 0 || best[win] > best[0] * (1.0 - options.margin);
      if (g.heuristic) {
        g.us = best[0];
      } else {
        g.algo = timed[win].config;
        g.workspace = timed[win].workspace;
        g.us = best[win];
      }
      if (gemv_win >= 0) {
        g.gemv_timed = true;
        g.gemv_us = gemv_best;
        // The GEMV only where it beats cuBLASLt's choice: a tuned step never runs the slower.
        if (gemv_best < g.us) g.gemv = variants[gemv_win].Suffix();
      }
      if (options.log) {
        const GemmAlgo& a = timed[win].config;
        options.log(absl::StrFormat(
            "autotune gemm m=%d n=%d k=%d %s: %s %.2f us (heuristic %.2f us, %.2fx; fastest of "
            "%d: algo %d tile %d stages %d splitk %d, %.2f us)",
            m, shape.n, shape.k, ir::DTypeName(shape.dtype),
            g.heuristic ? "heuristic kept" : "tuned", g.us, g.heuristic_us,
            g.heuristic_us / g.us, g.candidates, a.id, a.tile, a.stages, a.splitk, best[win]));
        if (g.gemv_timed) {
          options.log(absl::StrFormat("  gemv %s %.2f us: %s", variants[gemv_win].Suffix(),
                                      g.gemv_us, g.gemv.empty() ? "cuBLASLt kept" : "chosen"));
        }
      }
      tuning->gemm.push_back(g);
    }
  }
  return absl::OkStatus();
}

}  // namespace kvcc::runtime
