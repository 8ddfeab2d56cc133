#include "runtime/cuda/cublaslt_gemm.h"

#include <chrono>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "ir/startup_marks.h"
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

cudaDataType_t AbType(ir::DType dtype) {
  return dtype == ir::DType::kBF16 ? CUDA_R_16BF : CUDA_R_16F;
}

// Y's type: f32, or the inputs' own 16-bit type (the combinations cuBLASLt runs with f32
// compute).
cudaDataType_t CType(ir::DType dtype, ir::DType out_dtype) {
  return out_dtype == ir::DType::kF32 ? CUDA_R_32F : AbType(dtype);
}

std::string ShapeName(int64_t tokens, int64_t in, int64_t out, ir::DType dtype) {
  return absl::StrCat(tokens, "x", in, " . ", in, "x", out, " in ", ir::DTypeName(dtype));
}

// The config attributes with their storage types, in the order tuning.json lists them.
template <typename T>
cublasStatus_t SetAttr(cublasLtMatmulAlgo_t* algo, cublasLtMatmulAlgoConfigAttributes_t attr,
                       int v) {
  const T value = static_cast<T>(v);
  return cublasLtMatmulAlgoConfigSetAttribute(algo, attr, &value, sizeof(value));
}
template <typename T>
int GetAttr(const cublasLtMatmulAlgo_t& algo, cublasLtMatmulAlgoConfigAttributes_t attr) {
  T value{};
  size_t written = 0;
  if (cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, &value, sizeof(value), &written) !=
      CUBLAS_STATUS_SUCCESS) {
    return 0;
  }
  return static_cast<int>(value);
}

}  // namespace

GemmAlgo GemmAlgoOf(const cublasLtMatmulAlgo_t& algo) {
  GemmAlgo g;
  g.id = GetAttr<int32_t>(algo, CUBLASLT_ALGO_CONFIG_ID);
  g.tile = GetAttr<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_TILE_ID);
  g.stages = GetAttr<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_STAGES_ID);
  g.splitk = GetAttr<int32_t>(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM);
  g.reduction = GetAttr<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME);
  g.swizzle = GetAttr<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING);
  g.custom = GetAttr<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION);
  g.inner_shape = GetAttr<uint16_t>(algo, CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID);
  g.cluster_shape = GetAttr<uint16_t>(algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID);
  if (g.splitk < 1) g.splitk = 1;
  return g;
}

void WarmCublasLt() {
  // Raw calls, not a CudaContext: that one would print the `context` mark and trim the pool.
  const auto t0 = std::chrono::steady_clock::now();
  if (!CublasLtLoaded().ok() || cudaSetDevice(0) != cudaSuccess) return;
  constexpr int64_t kN = 64;
  cublasLtHandle_t handle = nullptr;
  cudaStream_t stream = nullptr;
  void* buf = nullptr;
  CublasLtGemm::Plan p;
  if (cublasLtCreate(&handle) == CUBLAS_STATUS_SUCCESS &&
      cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess &&
      cudaMalloc(&buf, kN * kN * 8) == cudaSuccess) {
    CublasLtGemm probe;
    probe.handle_ = handle;
    // Both output types a model's GEMMs use: f16 activations, f32 logits.
    for (ir::DType out : {ir::DType::kF16, ir::DType::kF32}) {
      if (!probe.Describe(&p, kN, kN, kN, ir::DType::kF16, out).ok()) continue;
      auto results = probe.Heuristic(p, 1);
      if (results.ok() && !results->empty() && (*results)[0].workspaceSize == 0) {
        auto* x = static_cast<uint8_t*>(buf);
        const float alpha = 1.0f, beta = 0.0f;
        cublasLtMatmul(handle, p.op, &alpha, x, p.a, x + kN * kN * 2, p.b, &beta,
                       x + kN * kN * 4, p.c, x + kN * kN * 4, p.c, &(*results)[0].algo, nullptr,
                       0, stream);
        cudaStreamSynchronize(stream);
      }
      CublasLtGemm::Destroy(&p);
    }
    probe.handle_ = nullptr;  // destroyed below
  }
  if (buf != nullptr) cudaFree(buf);
  if (stream != nullptr) cudaStreamDestroy(stream);
  if (handle != nullptr) cublasLtDestroy(handle);
  cudaGetLastError();
  ir::StartupMark("cublaslt_warm",
                  absl::StrCat("ms=", std::chrono::duration<double, std::milli>(
                                          std::chrono::steady_clock::now() - t0).count()));
}

absl::StatusOr<std::unique_ptr<CublasLtGemm>> CublasLtGemm::Create(
    std::shared_ptr<CudaContext> ctx) {
  std::unique_ptr<CublasLtGemm> g(new CublasLtGemm());
  g->ctx_ = std::move(ctx);
  return g;
}

absl::Status CublasLtGemm::EnsureHandle() {
  if (handle_ != nullptr) return absl::OkStatus();
  KVCC_RETURN_IF_ERROR(CublasLtLoaded());
  KVCC_RETURN_IF_ERROR(LtCheck(cublasLtCreate(&handle_), "cublasLtCreate"));
  DropStaleTuning();
  return absl::OkStatus();
}

void CublasLtGemm::DropStaleTuning() {
  const int64_t here = LibraryVersion();
  if (!stored_.empty() && tuned_version_ != 0 && tuned_version_ != here) {
    std::fprintf(stderr,
                 "kvcc: warning: the GEMM algorithms in %s were measured with cuBLASLt %lld, "
                 "this is %lld: using cuBLASLt's heuristic instead (re-run `kvcc compile "
                 "--autotune` here)\n",
                 kTuningFileName, static_cast<long long>(tuned_version_),
                 static_cast<long long>(here));
    stored_.clear();
  }
}

int64_t CublasLtGemm::LibraryVersion() {
  if (!CublasLtLoaded().ok()) return 0;
  return static_cast<int64_t>(cublasLtGetVersion());
}

void CublasLtGemm::SetTuning(const std::vector<GemmTuning>& gemm, int64_t cublaslt_version) {
  stored_.clear();
  tuned_version_ = cublaslt_version;
  for (const GemmTuning& g : gemm) {
    if (g.heuristic) continue;
    stored_[std::make_tuple(g.m, g.k, g.n, static_cast<int>(g.dtype))] = g.algo;
  }
  if (handle_ != nullptr) DropStaleTuning();
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

void CublasLtGemm::Destroy(Plan* p) {
  if (p->a) cublasLtMatrixLayoutDestroy(p->a);
  if (p->b) cublasLtMatrixLayoutDestroy(p->b);
  if (p->c) cublasLtMatrixLayoutDestroy(p->c);
  if (p->op) cublasLtMatmulDescDestroy(p->op);
  *p = Plan();
}

CublasLtGemm::~CublasLtGemm() {
  for (auto& [key, p] : plans_) Destroy(&p);
  if (workspace_ != nullptr) {
    cudaStreamSynchronize(ctx_->stream());
    cudaFree(workspace_);
  }
  if (handle_ != nullptr) cublasLtDestroy(handle_);
}

absl::Status CublasLtGemm::Describe(Plan* p, int64_t tokens, int64_t in, int64_t out,
                                    ir::DType dtype, ir::DType out_dtype) {
  const cudaDataType_t ab = AbType(dtype);
  absl::Status s = LtCheck(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                           "cublasLtMatmulDescCreate");
  if (s.ok()) {
    const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
    cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a));
    cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b));
    // Column-major: A = W as [in, out] (ld in), transposed; B = X as [in, tokens] (ld in);
    // C = Y as [out, tokens] (ld out).
    s = LtCheck(cublasLtMatrixLayoutCreate(&p->a, ab, in, out, in), "layout A");
  }
  if (s.ok()) s = LtCheck(cublasLtMatrixLayoutCreate(&p->b, ab, in, tokens, in), "layout B");
  if (s.ok()) {
    s = LtCheck(cublasLtMatrixLayoutCreate(&p->c, CType(dtype, out_dtype), out, tokens, out),
                "layout C");
  }
  if (!s.ok()) Destroy(p);
  return s;
}

absl::StatusOr<std::vector<cublasLtMatmulHeuristicResult_t>> CublasLtGemm::Heuristic(
    const Plan& p, int count) {
  cublasLtMatmulPreference_t pref = nullptr;
  KVCC_RETURN_IF_ERROR(LtCheck(cublasLtMatmulPreferenceCreate(&pref), "preference"));
  uint64_t ws = static_cast<uint64_t>(kMaxWorkspaceBytes);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                       sizeof(ws));
  std::vector<cublasLtMatmulHeuristicResult_t> results(count);
  int found = 0;
  absl::Status s = LtCheck(cublasLtMatmulAlgoGetHeuristic(handle_, p.op, p.a, p.b, p.c, p.c,
                                                          pref, count, results.data(), &found),
                           "cublasLtMatmulAlgoGetHeuristic");
  cublasLtMatmulPreferenceDestroy(pref);
  KVCC_RETURN_IF_ERROR(s);
  results.resize(found);
  return results;
}

absl::StatusOr<GemmCandidate> CublasLtGemm::RebuildFor(const Plan& p, const GemmAlgo& g,
                                                       ir::DType dtype, ir::DType out_dtype) {
  const cudaDataType_t ab = AbType(dtype), c_type = CType(dtype, out_dtype);
  GemmCandidate c;
  c.config = g;
  KVCC_RETURN_IF_ERROR(LtCheck(cublasLtMatmulAlgoInit(handle_, CUBLAS_COMPUTE_32F, CUDA_R_32F,
                                                      ab, ab, c_type, c_type, g.id,
                                                      &c.algo),
                               absl::StrCat("cublasLtMatmulAlgoInit(algorithm ", g.id, ")")));
  const struct {
    cublasStatus_t status;
    const char* name;
  } set[] = {
      {SetAttr<uint32_t>(&c.algo, CUBLASLT_ALGO_CONFIG_TILE_ID, g.tile), "tile"},
      {SetAttr<uint32_t>(&c.algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, g.stages), "stages"},
      {SetAttr<int32_t>(&c.algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, g.splitk), "splitk"},
      {SetAttr<uint32_t>(&c.algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, g.reduction),
       "reduction"},
      {SetAttr<uint32_t>(&c.algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, g.swizzle), "swizzle"},
      {SetAttr<uint32_t>(&c.algo, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, g.custom), "custom"},
      {SetAttr<uint16_t>(&c.algo, CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID, g.inner_shape),
       "inner_shape"},
      {SetAttr<uint16_t>(&c.algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, g.cluster_shape),
       "cluster_shape"},
  };
  for (const auto& a : set) {
    KVCC_RETURN_IF_ERROR(LtCheck(a.status, absl::StrCat("setting the algorithm's ", a.name)));
  }
  cublasLtMatmulHeuristicResult_t result{};
  KVCC_RETURN_IF_ERROR(LtCheck(
      cublasLtMatmulAlgoCheck(handle_, p.op, p.a, p.b, p.c, p.c, &c.algo, &result),
      absl::StrCat("cublasLtMatmulAlgoCheck(algorithm ", g.id, " tile ", g.tile, " stages ",
                   g.stages, " splitk ", g.splitk, ")")));
  c.workspace = static_cast<int64_t>(result.workspaceSize);
  return c;
}

absl::StatusOr<CublasLtGemm::Plan*> CublasLtGemm::GetPlan(int64_t tokens, int64_t in,
                                                          int64_t out, ir::DType dtype,
                                                          ir::DType out_dtype) {
  const Key key = std::make_tuple(tokens, in, out, static_cast<int>(dtype),
                                  static_cast<int>(out_dtype));
  auto it = plans_.find(key);
  if (it != plans_.end()) return &it->second;
  const auto t0 = std::chrono::steady_clock::now();
  KVCC_RETURN_IF_ERROR(EnsureHandle());
  Plan p;
  KVCC_RETURN_IF_ERROR(Describe(&p, tokens, in, out, dtype, out_dtype));
  absl::Status s;
  bool chosen = false;
  // tuning.json's algorithms were timed with f32 outputs; a 16-bit output runs the same
  // algorithm when cuBLASLt's check accepts it for that output type.
  if (auto st = stored_.find(std::make_tuple(tokens, in, out, static_cast<int>(dtype)));
      st != stored_.end()) {
    auto rebuilt = RebuildFor(p, st->second, dtype, out_dtype);
    if (rebuilt.ok()) s = ReserveWorkspace(rebuilt->workspace);
    if (rebuilt.ok() && s.ok()) {
      p.algo = rebuilt->algo;
      p.stored = chosen = true;
    } else if (s.ok()) {
      // Another driver or device may lack the kernel: the heuristic still runs the shape.
      std::fprintf(stderr,
                   "kvcc: warning: %s's cuBLASLt algorithm for %s does not run here (%s): "
                   "using the heuristic's\n",
                   kTuningFileName, ShapeName(tokens, in, out, dtype).c_str(),
                   std::string(rebuilt.status().message()).c_str());
    }
  }
  if (s.ok() && !chosen) {
    auto results = Heuristic(p, 1);
    s = results.status();
    if (s.ok() && results->empty()) {
      s = absl::UnimplementedError(
          absl::StrCat("cuBLASLt has no algorithm for ", ShapeName(tokens, in, out, dtype)));
    }
    if (s.ok()) {
      p.algo = (*results)[0].algo;
      s = ReserveWorkspace(static_cast<int64_t>((*results)[0].workspaceSize));
    }
  }
  if (!s.ok()) {
    Destroy(&p);
    return s;
  }
  if (plans_.empty()) {
    ir::StartupMark("gemm_plan", absl::StrCat("ms=", std::chrono::duration<double, std::milli>(
                                                       std::chrono::steady_clock::now() - t0)
                                                       .count(),
                                             " stored=", p.stored ? 1 : 0));
  }
  return &plans_.emplace(key, p).first->second;
}

absl::StatusOr<std::vector<GemmCandidate>> CublasLtGemm::Heuristics(int64_t tokens, int64_t in,
                                                                    int64_t out, ir::DType dtype,
                                                                    int count) {
  KVCC_ASSIGN_OR_RETURN(Plan * p, GetPlan(tokens, in, out, dtype));
  KVCC_ASSIGN_OR_RETURN(auto results, Heuristic(*p, count));
  std::vector<GemmCandidate> out_list;
  for (const auto& r : results) {
    if (r.state != CUBLAS_STATUS_SUCCESS) continue;
    GemmCandidate c;
    c.algo = r.algo;
    c.config = GemmAlgoOf(r.algo);
    c.workspace = static_cast<int64_t>(r.workspaceSize);
    out_list.push_back(c);
  }
  return out_list;
}

absl::StatusOr<GemmCandidate> CublasLtGemm::Rebuild(const GemmAlgo& config, int64_t tokens,
                                                    int64_t in, int64_t out, ir::DType dtype) {
  KVCC_ASSIGN_OR_RETURN(Plan * p, GetPlan(tokens, in, out, dtype));
  return RebuildFor(*p, config, dtype, ir::DType::kF32);
}

absl::StatusOr<bool> CublasLtGemm::UsesStoredAlgo(int64_t tokens, int64_t in, int64_t out,
                                                  ir::DType dtype) {
  KVCC_ASSIGN_OR_RETURN(Plan * p, GetPlan(tokens, in, out, dtype));
  return p->stored;
}

absl::Status CublasLtGemm::MatmulWith(const GemmCandidate& algo, const void* x, const void* w,
                                      float* y, int64_t tokens, int64_t in, int64_t out,
                                      ir::DType dtype) {
  KVCC_ASSIGN_OR_RETURN(Plan * p, GetPlan(tokens, in, out, dtype));
  KVCC_RETURN_IF_ERROR(ReserveWorkspace(algo.workspace));
  const float alpha = 1.0f, beta = 0.0f;
  return LtCheck(cublasLtMatmul(handle_, p->op, &alpha, w, p->a, x, p->b, &beta, y, p->c, y,
                                p->c, &algo.algo, workspace_, workspace_bytes_, ctx_->stream()),
                 absl::StrCat("matmul ", ShapeName(tokens, in, out, dtype)));
}

absl::Status CublasLtGemm::Matmul(const void* x, const void* w, void* y, int64_t tokens,
                                  int64_t in, int64_t out, ir::DType dtype, ir::DType out_dtype) {
  if (dtype != ir::DType::kF16 && dtype != ir::DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("cuBLASLt GEMM takes f16 or bf16, not ",
                                                   ir::DTypeName(dtype)));
  }
  if (out_dtype != ir::DType::kF32 && out_dtype != dtype) {
    return absl::InvalidArgumentError(absl::StrCat("cuBLASLt GEMM in ", ir::DTypeName(dtype),
                                                   " writes f32 or ", ir::DTypeName(dtype),
                                                   ", not ", ir::DTypeName(out_dtype)));
  }
  if (tokens <= 0 || in <= 0 || out <= 0) return absl::OkStatus();
  KVCC_ASSIGN_OR_RETURN(auto plan, GetPlan(tokens, in, out, dtype, out_dtype));
  const float alpha = 1.0f, beta = 0.0f;
  Plan& p = *plan;
  return LtCheck(cublasLtMatmul(handle_, p.op, &alpha, w, p.a, x, p.b, &beta, y, p.c, y, p.c,
                                &p.algo, workspace_, workspace_bytes_, ctx_->stream()),
                 absl::StrCat("matmul ", tokens, "x", in, " . ", in, "x", out));
}

}  // namespace kvcc::runtime
