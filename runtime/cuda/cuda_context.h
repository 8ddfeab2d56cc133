// The CUDA device one engine runs on: the device, the single stream every op of the engine is
// queued on, and kernels loaded from NVRTC cubins. Kernels are loaded through cudart's library
// API (cudaLibraryLoadData), so the driver is only ever reached through cudart and libcuda is
// never linked: binaries start, and report a clear error, on machines without a GPU.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "codegen/kernel_builder.h"
#include "runtime/cuda/typed_kernel.h"

namespace kvcc::runtime {

// OK, or an error "<what>: <cuda error name>: <description>".
absl::Status CudaCheck(cudaError_t err, absl::string_view what);

// Whether a usable CUDA device (and driver) is present.
bool CudaDeviceAvailable();

// The device commands run on when --device is not given: "cuda" when a GPU is present, else
// "cpu".
std::string DefaultDeviceName();

// Starts creating `device`'s primary context (the slowest part of start-up) on a background
// thread so it overlaps the caller's file reads; CudaContext::Create waits for it. Once.
void PrewarmCudaContext(int device);
// Blocks until PrewarmCudaContext's context is ready (at once when none was started).
void AwaitPrewarmedCudaContext();

struct CudaMemoryInfo {
  int64_t free_bytes = 0;
  int64_t total_bytes = 0;
  int64_t used_bytes() const { return total_bytes - free_bytes; }
};

class CudaContext {
 public:
  // Selects `device`, lowers the context's stack/printf/heap limits to what kvcc's kernels
  // need, creates its stream and lets the stream-ordered allocator keep freed
  // memory (so per-op allocations do not return to the driver each step). Fails with
  // FailedPrecondition when no GPU or driver is present.
  static absl::StatusOr<std::shared_ptr<CudaContext>> Create(int device = 0);
  ~CudaContext();
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  const codegen::GpuTarget& target() const { return target_; }
  const std::string& device_name() const { return device_name_; }

  // Loads `cubin` (once per distinct image; kept while the context lives). Finding the image
  // compares its bytes (2.2 MB for the ops program: 0.3 ms a lookup), so a caller resolving
  // many entry points loads it once and asks GetKernel for each.
  absl::StatusOr<cudaLibrary_t> LoadLibrary(const std::string& cubin);
  // Entry point `name` of a library from LoadLibrary.
  absl::StatusOr<cudaKernel_t> GetKernel(cudaLibrary_t library, const std::string& name);
  // Queues `kernel` on the stream; an empty grid queues nothing.
  template <typename P>
  absl::Status Launch(const TypedKernel<P>& kernel, dim3 grid, dim3 block, const P& params) {
    if (grid.x == 0 || grid.y == 0 || grid.z == 0) return absl::OkStatus();
    return CudaCheck(kernel.Launch(grid, block, params, stream_),
                     absl::StrCat("launching ", kernel.name));
  }
  // Waits for the stream and reports any error a queued kernel raised.
  absl::Status Synchronize();
  // cudaMemGetInfo for this device.
  absl::StatusOr<CudaMemoryInfo> MemoryInfo() const;
  // The per-thread stack limit set at creation (the floor of the context's local memory
  // reservation; launches that need more raise it); -1 if the driver did not say.
  int64_t stack_limit_bytes() const { return stack_limit_bytes_; }

 private:
  CudaContext() = default;
  // Lowers the context's stack, printf FIFO and malloc heap limits (see the .cc for why).
  void ShrinkLimits();
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  codegen::GpuTarget target_;
  std::string device_name_;
  int64_t stack_limit_bytes_ = -1;
  std::mutex mu_;
  std::map<std::string, cudaLibrary_t> libraries_;  // by cubin bytes
};

}  // namespace kvcc::runtime
