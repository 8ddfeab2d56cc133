#include "runtime/cuda/cuda_memory.h"

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"

namespace kvcc::runtime {

absl::StatusOr<int64_t> DeviceTensorBytes(ir::DType dtype, const std::vector<int64_t>& shape) {
  int64_t elements = 1;
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(absl::StrCat("cuda backend: negative dimension ", d,
                                                     " in an allocation"));
    }
    elements *= d;
  }
  return ir::DTypeBytes(dtype, elements);
}

absl::StatusOr<Tensor> AllocateDeviceTensor(const std::shared_ptr<CudaContext>& ctx,
                                            ir::DType dtype, std::vector<int64_t> shape,
                                            bool zero) {
  KVCC_ASSIGN_OR_RETURN(const int64_t bytes, DeviceTensorBytes(dtype, shape));
  void* ptr = nullptr;
  if (bytes > 0) {
    if (auto s = CudaCheck(cudaMallocAsync(&ptr, bytes, ctx->stream()),
                           absl::StrCat("cudaMallocAsync(", bytes, " bytes for ",
                                        ir::DTypeName(dtype), " tensor)"));
        !s.ok()) {
      return s;
    }
    if (zero) {
      if (auto s = CudaCheck(cudaMemsetAsync(ptr, 0, bytes, ctx->stream()), "cudaMemsetAsync");
          !s.ok()) {
        cudaFreeAsync(ptr, ctx->stream());
        return s;
      }
    }
  }
  std::shared_ptr<CudaContext> keep = ctx;
  std::shared_ptr<const void> owner(ptr, [keep](const void* p) {
    if (p != nullptr) cudaFreeAsync(const_cast<void*>(p), keep->stream());
  });
  return Tensor::View(dtype, std::move(shape), Device::kCuda, ptr, std::move(owner));
}

absl::StatusOr<Tensor> AllocateDeviceBuffer(const std::shared_ptr<CudaContext>& ctx,
                                            int64_t bytes, absl::string_view what) {
  if (bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("cuda backend: buffer of ", bytes, " bytes"));
  }
  void* ptr = nullptr;
  if (auto s = CudaCheck(cudaMalloc(&ptr, bytes),
                         absl::StrCat("cudaMalloc(", bytes, " bytes for ", what, ")"));
      !s.ok()) {
    return s;
  }
  if (auto s = CudaCheck(cudaMemsetAsync(ptr, 0, bytes, ctx->stream()), "cudaMemsetAsync");
      !s.ok()) {
    cudaFree(ptr);
    return s;
  }
  std::shared_ptr<CudaContext> keep = ctx;
  std::shared_ptr<const void> owner(ptr, [keep](const void* p) {
    // The stream may still read the buffer; cudaFree waits for the device first.
    cudaStreamSynchronize(keep->stream());
    cudaFree(const_cast<void*>(p));
  });
  return Tensor::View(ir::DType::kU8, {bytes}, Device::kCuda, ptr, std::move(owner));
}

Tensor DeviceView(const Tensor& base, int64_t offset, ir::DType dtype,
                  std::vector<int64_t> shape) {
  return Tensor::View(dtype, std::move(shape), Device::kCuda,
                      static_cast<uint8_t*>(base.raw()) + offset, base.owner());
}

absl::StatusOr<Tensor> CopyToDevice(const std::shared_ptr<CudaContext>& ctx, const Tensor& host) {
  if (host.device() != Device::kCpu) {
    return absl::InvalidArgumentError(absl::StrCat("cuda backend: ", host.ToString(),
                                                   " is not a host tensor"));
  }
  if (host.raw() == nullptr && host.NumElements() != 0) {
    return absl::InvalidArgumentError("cuda backend: host tensor has no data");
  }
  KVCC_ASSIGN_OR_RETURN(auto dev, AllocateDeviceTensor(ctx, host.dtype(), host.shape(), false));
  if (host.NumBytes() > 0) {
    if (auto s = CudaCheck(cudaMemcpyAsync(dev.raw(), host.raw(), host.NumBytes(),
                                           cudaMemcpyHostToDevice, ctx->stream()),
                           absl::StrCat("copying ", host.ToString(), " to the device"));
        !s.ok()) {
      return s;
    }
  }
  return dev;
}

absl::StatusOr<Tensor> CopyToHost(const std::shared_ptr<CudaContext>& ctx, const Tensor& device) {
  if (device.device() == Device::kCpu) return device;
  Tensor host = Tensor::HostZeros(device.dtype(), device.shape());
  if (!host.defined()) {
    return absl::ResourceExhaustedError(absl::StrCat("cuda backend: no host memory for ",
                                                     device.ToString()));
  }
  if (device.NumBytes() > 0) {
    if (auto s = CudaCheck(cudaMemcpyAsync(host.raw(), device.raw(), device.NumBytes(),
                                           cudaMemcpyDeviceToHost, ctx->stream()),
                           absl::StrCat("copying ", device.ToString(), " to the host"));
        !s.ok()) {
      return s;
    }
  }
  KVCC_RETURN_IF_ERROR(ctx->Synchronize());
  return host;
}

}  // namespace kvcc::runtime
