#include "runtime/cuda/cublaslt_gemm.h"

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"
#include "runtime/cuda/cublaslt_library.h"

namespace kvcc::runtime {
namespace {

// cuBLASLt's recommended workspace for Hopper is 32 MiB; smaller ones rule out some kernels.
// The heuristic may choose among kernels needing up to this much, but only what the chosen
// kernels need is allocated (on the H100 some 7B-shaped GEMMs still ask for all of it).
constexpr int64_t kMaxWorkspaceBytes = int64_t{32} << 20;

absl::Status LtCheck(cublasStatus_t s, absl::string_view what) {
  if (s == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  // cublasGetStatusString lives in libcublas, which the runtime does not link; the number is
  // what cublas_api.h's cublasStatus_t lists.
  return absl::InternalError(absl::StrCat("cuBLASLt ", what, " failed with cublasStatus_t ",
                                          static_cast<int>(s)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<CublasLtGemm>> CublasLtGemm::Create(
    std::shared_ptr<CudaContext> ctx) {
  std::unique_ptr<CublasLtGemm> g(new CublasLtGemm());
  g->ctx_ = std::move(ctx);
  KVCC_RETURN_IF_ERROR(CublasLtLoaded());
  KVCC_RETURN_IF_ERROR(LtCheck(cublasLtCreate(&g->handle_), "cublasLtCreate"));
  return g;
}

absl::Status CublasLtGemm::ReserveWorkspace(int64_t bytes) {
  if (bytes <= workspace_bytes_) return absl::OkStatus();
  // Queued GEMMs may still use the old workspace; this happens once per new shape at most.
  if (workspace_ != nullptr) {
    if (auto s = CudaCheck(cudaStreamSynchronize(ctx_->stream()), "GEMM workspace resize");
        !s.ok()) {
      return s;
    }
    cudaFree(workspace_);
    workspace_ = nullptr;
    workspace_bytes_ = 0;
  }
  // Whole MiBs, so a run of slightly larger needs does not resize each time.
  const int64_t rounded = (bytes + (int64_t{1} << 20) - 1) >> 20 << 20;
  if (auto s = CudaCheck(cudaMalloc(&workspace_, rounded),
                         absl::StrCat("cudaMalloc(", rounded, " bytes of GEMM workspace)"));
      !s.ok()) {
    workspace_ = nullptr;
    return s;
  }
  workspace_bytes_ = rounded;
  return absl::OkStatus();
}

CublasLtGemm::~CublasLtGemm() {
  for (auto& [key, p] : plans_) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.c);
    cublasLtMatmulDescDestroy(p.op);
  }
  if (workspace_ != nullptr) {
    cudaStreamSynchronize(ctx_->stream());
    cudaFree(workspace_);
  }
  if (handle_ != nullptr) cublasLtDestroy(handle_);
}

absl::StatusOr<CublasLtGemm::Plan*> CublasLtGemm::GetPlan(int64_t tokens, int64_t in,
                                                          int64_t out, ir::DType dtype) {
  const auto key = std::make_tuple(tokens, in, out, static_cast<int>(dtype));
  auto it = plans_.find(key);
  if (it != plans_.end()) return &it->second;
  const cudaDataType_t ab = dtype == ir::DType::kBF16 ? CUDA_R_16BF : CUDA_R_16F;
  Plan p;
  if (auto s = LtCheck(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                       "cublasLtMatmulDescCreate");
      !s.ok()) {
    return s;
  }
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a));
  cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b));
  // Column-major: A = W as [in, out] (ld in), transposed; B = X as [in, tokens] (ld in);
  // C = Y as [out, tokens] (ld out).
  absl::Status s = LtCheck(cublasLtMatrixLayoutCreate(&p.a, ab, in, out, in), "layout A");
  if (s.ok()) s = LtCheck(cublasLtMatrixLayoutCreate(&p.b, ab, in, tokens, in), "layout B");
  if (s.ok()) s = LtCheck(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, out, tokens, out), "layout C");
  cublasLtMatmulPreference_t pref = nullptr;
  if (s.ok()) s = LtCheck(cublasLtMatmulPreferenceCreate(&pref), "preference");
  if (s.ok()) {
    uint64_t ws = static_cast<uint64_t>(kMaxWorkspaceBytes);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                         sizeof(ws));
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    s = LtCheck(cublasLtMatmulAlgoGetHeuristic(handle_, p.op, p.a, p.b, p.c, p.c, pref, 1,
                                               &result, &found),
                "cublasLtMatmulAlgoGetHeuristic");
    if (s.ok() && found == 0) {
      s = absl::UnimplementedError(absl::StrCat("cuBLASLt has no algorithm for ", tokens, "x", in,
                                                " . ", in, "x", out, " in ",
                                                ir::DTypeName(dtype)));
    }
    if (s.ok()) {
      p.algo = result.algo;
      s = ReserveWorkspace(static_cast<int64_t>(result.workspaceSize));
    }
  }
  if (pref != nullptr) cublasLtMatmulPreferenceDestroy(pref);
  if (!s.ok()) {
    if (p.a) cublasLtMatrixLayoutDestroy(p.a);
    if (p.b) cublasLtMatrixLayoutDestroy(p.b);
    if (p.c) cublasLtMatrixLayoutDestroy(p.c);
    cublasLtMatmulDescDestroy(p.op);
    return s;
  }
  return &plans_.emplace(key, p).first->second;
}

absl::Status CublasLtGemm::Matmul(const void* x, const void* w, float* y, int64_t tokens,
                                  int64_t in, int64_t out, ir::DType dtype) {
  if (dtype != ir::DType::kF16 && dtype != ir::DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("cuBLASLt GEMM takes f16 or bf16, not ",
                                                   ir::DTypeName(dtype)));
  }
  if (tokens <= 0 || in <= 0 || out <= 0) return absl::OkStatus();
  KVCC_ASSIGN_OR_RETURN(auto plan, GetPlan(tokens, in, out, dtype));
  const float alpha = 1.0f, beta = 0.0f;
  Plan& p = *plan;
  return LtCheck(cublasLtMatmul(handle_, p.op, &alpha, w, p.a, x, p.b, &beta, y, p.c, y, p.c,
                                &p.algo, workspace_, workspace_bytes_, ctx_->stream()),
                 absl::StrCat("matmul ", tokens, "x", in, " . ", in, "x", out));
}

}  // namespace kvcc::runtime
