// The W4A16 linear on the GPU: the NVRTC kernels of codegen/w4_gemv.cuh loaded for one
// CudaContext. Up to kW4GemvMaxTokens tokens run the GEMV (weights read once per 16 tokens,
// dequantized in registers); larger batches and prefill expand the weight to f16 and take the
// backend's tensor-core GEMM. CudaBackend::QuantizedLinear (defined in the .cc) dispatches.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "codegen/w4_params.h"
#include "runtime/backend.h"
#include "runtime/cuda/cuda_context.h"

namespace kvcc::runtime {

// Batches above this go through dequantize + GEMM.
inline constexpr int64_t kW4GemvMaxTokens = 16;

class CudaW4Linear {
 public:
  static absl::StatusOr<std::shared_ptr<CudaW4Linear>> Create(std::shared_ptr<CudaContext> ctx);

  // Why the kernels cannot take `w` (f16 scales, widths and group size multiples of 8 needed),
  // or OK.
  static absl::Status Supports(const QuantizedWeight& w);

  // y f32 [T, out] = x f32 [T, in] times the dequantized weight, plus `bias32` (f32 [out]) when
  // set; y must be allocated.
  absl::Status Gemv(const Tensor& x, const QuantizedWeight& w, const float* bias32, Tensor* y);
  // The weight as f16 [out, in] into w16 (allocated).
  absl::Status Dequantize(const QuantizedWeight& w, Tensor* w16);

 private:
  explicit CudaW4Linear(std::shared_ptr<CudaContext> ctx) : ctx_(std::move(ctx)) {}
  kernels::W4LinearParams Params(const QuantizedWeight& w) const;

  std::shared_ptr<CudaContext> ctx_;
  TypedKernel<kernels::W4LinearParams> gemv_, dequant_;
  int max_blocks_ = 1024;
};

}  // namespace kvcc::runtime
