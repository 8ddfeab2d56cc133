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

  // Queues the kernel (the driver copies `params` before this returns). `programmatic`
  // launches it with programmatic stream serialization (sm_90+: it may start before the
  // previous kernel on the stream ends, so it must call griddepcontrol.wait before it reads
  // that kernel's results or writes anything; codegen/ops_common.cuh grid_dependency_wait).
  // Stream capture keeps the relaxed edge in the graph.
  cudaError_t Launch(dim3 grid, dim3 block, const P& params, cudaStream_t stream,
                     size_t shared_bytes = 0, bool programmatic = false) const {
    void* args[] = {const_cast<P*>(&params)};
    if (!programmatic) {
      return cudaLaunchKernel(reinterpret_cast<const void*>(fn), grid, block, args,
                              shared_bytes, stream);
    }
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = shared_bytes;
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    return cudaLaunchKernelExC(&cfg, reinterpret_cast<const void*>(fn), args);
  }
};

}  // namespace kvcc::runtime
