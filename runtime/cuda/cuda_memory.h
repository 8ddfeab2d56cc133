// Device memory for runtime::Tensor: stream-ordered allocations (cudaMallocAsync on the
// context's stream, freed with cudaFreeAsync when the last Tensor sharing them goes away) and
// copies between host and device tensors. Every allocation holds its CudaContext, so tensors
// may outlive the backend that made them.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/dtype.h"
#include "runtime/cuda/cuda_context.h"
#include "runtime/tensor.h"

namespace kvcc::runtime {

// Bytes of a `dtype` tensor of `shape`; a negative dimension is an error.
absl::StatusOr<int64_t> DeviceTensorBytes(ir::DType dtype, const std::vector<int64_t>& shape);

// A device tensor of `dtype` and `shape`; zero-filled when `zero` is set.
absl::StatusOr<Tensor> AllocateDeviceTensor(const std::shared_ptr<CudaContext>& ctx,
                                            ir::DType dtype, std::vector<int64_t> shape,
                                            bool zero);

// `bytes` of zeroed device memory from one cudaMalloc outside the stream-ordered pool (the KV
// cache, the packed weights: long-lived allocations whose size is exact), as a u8 tensor;
// `what` names it in errors.
absl::StatusOr<Tensor> AllocateDeviceBuffer(const std::shared_ptr<CudaContext>& ctx,
                                            int64_t bytes,
                                            absl::string_view what = "the KV cache");

// A device view of `bytes` at byte `offset` of `base` (sharing its owner).
Tensor DeviceView(const Tensor& base, int64_t offset, ir::DType dtype, std::vector<int64_t> shape);

// Host -> device copy of `host`'s bytes, queued on the stream. cudaMemcpyAsync stages pageable
// host memory before it returns, so `host` may be freed or changed right after.
absl::StatusOr<Tensor> CopyToDevice(const std::shared_ptr<CudaContext>& ctx, const Tensor& host);

// Device -> host copy; waits for the stream, so it also reports errors of queued kernels.
absl::StatusOr<Tensor> CopyToHost(const std::shared_ptr<CudaContext>& ctx, const Tensor& device);

}  // namespace kvcc::runtime
