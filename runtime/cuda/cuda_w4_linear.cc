#include "runtime/cuda/cuda_w4_linear.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "codegen/kernel_cache.h"
#include "codegen/w4_kernels.h"
#include "ir/status_macros.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_memory.h"
#include "runtime/op_operands.h"

namespace kvcc::runtime {

absl::StatusOr<std::shared_ptr<CudaW4Linear>> CudaW4Linear::Create(
    std::shared_ptr<CudaContext> ctx) {
  std::shared_ptr<CudaW4Linear> k(new CudaW4Linear(ctx));
  codegen::KernelCache cache(codegen::KernelCache::DefaultDir());
  KVCC_ASSIGN_OR_RETURN(codegen::BuiltW4Kernels built,
                        codegen::BuildW4Kernels(ctx->target(), &cache));
  for (auto [kernel, name] : {std::pair{&k->gemv_, "kvcc_w4_gemv"},
                              std::pair{&k->dequant_, "kvcc_w4_dequant_f16"}}) {
    KVCC_ASSIGN_OR_RETURN(kernel->fn, ctx->LoadKernel(built.compiled.cubin, name));
    kernel->name = name;
  }
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, ctx->device()) ==
          cudaSuccess &&
      sms > 0) {
    k->max_blocks_ = sms * 8;
  }
  return k;
}

absl::Status CudaW4Linear::Supports(const QuantizedWeight& w) {
  const int64_t in = w.codes->dim(1);
  if (w.scales->dtype() != ir::DType::kF16 || in % 8 != 0 || w.group_size % 8 != 0 ||
      w.codes->dim(0) > (int64_t{1} << 30) || in > (int64_t{1} << 30)) {
    return absl::UnimplementedError(absl::StrCat(
        "cuda backend: the 4-bit kernels need f16 scales and an input width and group size "
        "that are multiples of 8; got ", w.codes->ToString(), ", scales ", w.scales->ToString(),
        ", group_size ", w.group_size));
  }
  return absl::OkStatus();
}

kernels::W4LinearParams CudaW4Linear::Params(const QuantizedWeight& w) const {
  kernels::W4LinearParams p{};
  p.codes = static_cast<const unsigned char*>(w.codes->raw());
  p.scales = w.scales->raw();
  p.zeros = w.zeros != nullptr ? static_cast<const unsigned char*>(w.zeros->raw()) : nullptr;
  p.out = static_cast<int>(w.codes->dim(0));
  p.in = static_cast<int>(w.codes->dim(1));
  p.group_size = static_cast<int>(w.group_size);
  return p;
}

absl::Status CudaW4Linear::Gemv(const Tensor& x, const QuantizedWeight& w, const float* bias32,
                                Tensor* y) {
  kernels::W4LinearParams p = Params(w);
  p.x = x.data<float>();
  p.y = y->data<float>();
  p.bias = bias32;
  p.tokens = static_cast<int>(x.dim(0));
  const dim3 grid((p.out + codegen::kW4GemvRows - 1) / codegen::kW4GemvRows,
                  (p.tokens + codegen::kW4GemvTokens - 1) / codegen::kW4GemvTokens);
  return ctx_->Launch(gemv_, grid, dim3(codegen::kW4Threads), p);
}

absl::Status CudaW4Linear::Dequantize(const QuantizedWeight& w, Tensor* w16) {
  kernels::W4LinearParams p = Params(w);
  p.w16 = w16->raw();
  const int64_t chunks = int64_t{p.out} * (p.in / 8);
  const int64_t blocks =
      std::min<int64_t>((chunks + codegen::kW4Threads - 1) / codegen::kW4Threads, max_blocks_);
  return ctx_->Launch(dequant_, dim3(static_cast<unsigned>(blocks)), dim3(codegen::kW4Threads), p);
}

// The backend's entry point lives here so cuda_backend.cc only declares it.
absl::StatusOr<Tensor> CudaBackend::QuantizedLinear(const Tensor& x, const QuantizedWeight& w,
                                                    const Tensor* bias) {
  KVCC_RETURN_IF_ERROR(CheckActivation(x, Device::kCuda, "linear input"));
  KVCC_RETURN_IF_ERROR(CheckQuantizedWeight(x, w, Device::kCuda));
  KVCC_RETURN_IF_ERROR(CudaW4Linear::Supports(w));
  const int64_t tokens = x.dim(0), out = w.codes->dim(0), in = x.dim(1);
  if (bias != nullptr) {
    KVCC_RETURN_IF_ERROR(CheckWeight(*bias, Device::kCuda, "linear bias"));
    if (bias->NumElements() != out) {
      return absl::InvalidArgumentError(absl::StrCat("linear: bias ", bias->ToString(),
                                                     " must have ", out, " elements"));
    }
  }
  if (w4_ == nullptr) {
    KVCC_ASSIGN_OR_RETURN(w4_, CudaW4Linear::Create(ctx_));
  }
  if (tokens > kW4GemvMaxTokens) {
    // Prefill and large batches: f16 weight for the tensor cores, freed after the GEMM.
    KVCC_ASSIGN_OR_RETURN(auto w16, AllocateDeviceTensor(ctx_, ir::DType::kF16, {out, in}, false));
    KVCC_RETURN_IF_ERROR(w4_->Dequantize(w, &w16));
    return Linear(x, w16, bias);
  }
  KVCC_ASSIGN_OR_RETURN(auto y, AllocateDeviceTensor(ctx_, ir::DType::kF32, {tokens, out}, false));
  Tensor bias32;
  if (bias != nullptr) {
    KVCC_ASSIGN_OR_RETURN(bias32, Cast(*bias, ir::DType::kF32));
  }
  KVCC_RETURN_IF_ERROR(
      w4_->Gemv(x, w, bias != nullptr ? bias32.data<float>() : nullptr, &y));
  return y;
}

}  // namespace kvcc::runtime
