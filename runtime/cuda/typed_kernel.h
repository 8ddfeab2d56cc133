// A loaded kernel whose one argument is its parameter struct P (codegen/attention_params.h,
// codegen/ops_params.h): a launch passes exactly a P, so a wrong argument list is a compile
// error on the host rather than a fault on the GPU.
#pragma once

#include <cuda_runtime_api.h>

#include <string>
#include <type_traits>

namespace kvcc::runtime {

template <typename P>
struct TypedKernel {
  static_assert(std::is_trivially_copyable_v<P> && std::is_standard_layout_v<P>,
                "kernel parameters are copied to the device byte for byte");
  static_assert(sizeof(P) <= 4096, "kernel parameters are limited to 4 KiB");

  cudaKernel_t fn = nullptr;
  std::string name;  // the entry point, for errors

  // Queues the kernel (the driver copies `params` before this returns).
  cudaError_t Launch(dim3 grid, dim3 block, const P& params, cudaStream_t stream,
                     size_t shared_bytes = 0) const {
    void* args[] = {const_cast<P*>(&params)};
    return cudaLaunchKernel(reinterpret_cast<const void*>(fn), grid, block, args, shared_bytes,
                            stream);
  }
};

}  // namespace kvcc::runtime
