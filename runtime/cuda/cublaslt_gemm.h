// Linear layers on the GPU through cuBLASLt: Y[T, out] (f32) = X[T, in] . W[out, in]^T with X
// and W in f16 (or both bf16) and f32 accumulation. In cuBLAS's column-major terms this is the
// "TN" product, the layout its fastest kernels expect. The algorithm for each shape is chosen
// once by the heuristic and remembered; one workspace, as large as the largest chosen
// algorithm needs, serves every call on the stream.
#pragma once

#include <cublasLt.h>

#include <map>
#include <memory>
#include <tuple>

#include "absl/status/statusor.h"
#include "ir/dtype.h"
#include "runtime/cuda/cuda_context.h"
#include "runtime/tensor.h"

namespace kvcc::runtime {

class CublasLtGemm {
 public:
  static absl::StatusOr<std::unique_ptr<CublasLtGemm>> Create(std::shared_ptr<CudaContext> ctx);
  ~CublasLtGemm();

  // y = x . w^T, where x is [tokens, in] and w is [out, in], both `dtype` (f16 or bf16), and
  // y is f32 [tokens, out]; all device pointers, queued on the context's stream.
  absl::Status Matmul(const void* x, const void* w, float* y, int64_t tokens, int64_t in,
                      int64_t out, ir::DType dtype);

  // The workspace allocated so far: the most any planned shape's algorithm asked for.
  int64_t workspace_bytes() const { return workspace_bytes_; }

 private:
  CublasLtGemm() = default;
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo;
  };
  absl::StatusOr<Plan*> GetPlan(int64_t tokens, int64_t in, int64_t out, ir::DType dtype);
  // Grows the workspace to at least `bytes`.
  absl::Status ReserveWorkspace(int64_t bytes);

  std::shared_ptr<CudaContext> ctx_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  int64_t workspace_bytes_ = 0;
  std::map<std::tuple<int64_t, int64_t, int64_t, int>, Plan> plans_;
};

}  // namespace kvcc::runtime
