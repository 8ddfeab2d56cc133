// Linear layers on the GPU through cuBLASLt: Y[T, out] (f32, or f16/bf16 like the inputs) =
// X[T, in] . W[out, in]^T with X and W in f16 (or both bf16) and f32 accumulation. In cuBLAS's column-major terms this is the
// "TN" product, the layout its fastest kernels expect. The algorithm for each shape is chosen
// once and remembered: the one tuning.json stores for the shape (`kvcc compile --autotune`
// measured it, runtime/cuda/gemm_autotune.h), else cuBLASLt's heuristic. One workspace, as
// large as the largest chosen algorithm needs, serves every call on the stream.
#pragma once

#include <cublasLt.h>

#include <map>
#include <memory>
#include <set>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/dtype.h"
#include "runtime/cuda/cuda_context.h"
#include "runtime/cuda/kernel_tuning.h"
#include "runtime/tensor.h"

namespace kvcc::runtime {

// One algorithm the heuristic offers for a shape: its config attributes and the descriptor.
struct GemmCandidate {
  GemmAlgo config;
  int64_t workspace = 0;
  cublasLtMatmulAlgo_t algo;
};

class CublasLtGemm {
 public:
  static absl::StatusOr<std::unique_ptr<CublasLtGemm>> Create(std::shared_ptr<CudaContext> ctx);
  ~CublasLtGemm();

  // The library's cublasLtGetVersion() (0 when it is not loaded).
  static int64_t LibraryVersion();

  // The stored algorithms (tuning.json's gemm entries) for the shapes not planned yet. Entries
  // measured with another cuBLASLt version are dropped with a warning when the library is
  // opened (at the first shape planned: the heuristic applies);
  // an entry whose algorithm does not check on this device warns and falls back when its shape
  // is first used.
  void SetTuning(const std::vector<GemmTuning>& gemm, int64_t cublaslt_version);

  // y = x . w^T, where x is [tokens, in] and w is [out, in], both `dtype` (f16 or bf16), and
  // y is [tokens, out] in `out_dtype` (f32, or `dtype` itself: the next op reads 16-bit
  // activations); all device pointers, queued on the context's stream.
  absl::Status Matmul(const void* x, const void* w, void* y, int64_t tokens, int64_t in,
                      int64_t out, ir::DType dtype, ir::DType out_dtype = ir::DType::kF32);

  // For the autotuner: up to `count` algorithms the heuristic offers, best first (entry 0 is
  // what Matmul uses without tuning).
  absl::StatusOr<std::vector<GemmCandidate>> Heuristics(int64_t tokens, int64_t in, int64_t out,
                                                        ir::DType dtype, int count);
  // `config` rebuilt as the runtime rebuilds a stored entry (cublasLtMatmulAlgoInit + the
  // attributes, then cublasLtMatmulAlgoCheck); an error when this device cannot run it.
  absl::StatusOr<GemmCandidate> Rebuild(const GemmAlgo& config, int64_t tokens, int64_t in,
                                        int64_t out, ir::DType dtype);
  // Matmul with `algo` instead of the planned one (the workspace grows as it needs).
  absl::Status MatmulWith(const GemmCandidate& algo, const void* x, const void* w, float* y,
                          int64_t tokens, int64_t in, int64_t out, ir::DType dtype);

  // Whether the shape's plan runs a stored algorithm (planning it if needed).
  absl::StatusOr<bool> UsesStoredAlgo(int64_t tokens, int64_t in, int64_t out, ir::DType dtype);

  // The workspace allocated so far: the most any planned shape's algorithm asked for.
  int64_t workspace_bytes() const { return workspace_bytes_; }

 private:
  CublasLtGemm() = default;
  friend void WarmCublasLt();
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo;
    bool stored = false;  // the algorithm came from the tuning
  };
  using Key = std::tuple<int64_t, int64_t, int64_t, int, int>;  // + the output dtype
  absl::StatusOr<Plan*> GetPlan(int64_t tokens, int64_t in, int64_t out, ir::DType dtype,
                                ir::DType out_dtype = ir::DType::kF32);
  // The descriptors of `p` for the shape; on error nothing is left allocated.
  absl::Status Describe(Plan* p, int64_t tokens, int64_t in, int64_t out, ir::DType dtype,
                        ir::DType out_dtype);
  static void Destroy(Plan* p);
  // `count` heuristic results for the described plan.
  absl::StatusOr<std::vector<cublasLtMatmulHeuristicResult_t>> Heuristic(const Plan& p,
                                                                         int count);
  absl::StatusOr<GemmCandidate> RebuildFor(const Plan& p, const GemmAlgo& config,
                                           ir::DType dtype, ir::DType out_dtype);
  // Opens cuBLASLt and creates the handle at the first shape planned, so that a backend whose
  // GEMMs never reach cuBLASLt (tiny models on the GEMV kernels) never waits for its load.
  absl::Status EnsureHandle();
  // Drops stored_ (with a warning) when it was measured with another cuBLASLt version.
  void DropStaleTuning();
  // Grows the workspace to at least `bytes`.
  absl::Status ReserveWorkspace(int64_t bytes);

  std::shared_ptr<CudaContext> ctx_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  int64_t workspace_bytes_ = 0;
  std::map<Key, Plan> plans_;
  std::map<std::tuple<int64_t, int64_t, int64_t, int>, GemmAlgo> stored_;  // by (m, k, n, dtype)
  int64_t tuned_version_ = 0;  // the cuBLASLt version stored_ was measured with
};

// One heuristic query and one tiny GEMM on a throwaway handle, on GPU 0: cuBLASLt sets up its
// heuristics and loads a kernel on first use, which otherwise lands in the first step.
// OpenModel runs it on its library thread while the files are read. Prints the startup mark
// `cublaslt_warm` (ms=...). Errors are ignored: the real handle reports them.
void WarmCublasLt();

// The config attributes of a cuBLASLt algorithm descriptor.
GemmAlgo GemmAlgoOf(const cublasLtMatmulAlgo_t& algo);

}  // namespace kvcc::runtime
