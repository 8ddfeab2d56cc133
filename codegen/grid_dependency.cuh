// Programmatic dependent launch (sm_90+), shared by the ops program and the attention kernels.
// A kernel launched with the programmatic stream serialization attribute may start while the
// kernel before it on the stream still runs. grid_dependency_wait() holds the calling thread
// until that grid has finished and its writes are visible. allow_dependents() lets the next
// kernel launch early. Both are no-ops for a kernel launched the ordinary way, and before sm_90.
#ifndef KVCC_CODEGEN_GRID_DEPENDENCY_CUH_
#define KVCC_CODEGEN_GRID_DEPENDENCY_CUH_

namespace kvcc_grid {

__device__ __forceinline__ void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void allow_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

}  // namespace kvcc_grid

#endif  // KVCC_CODEGEN_GRID_DEPENDENCY_CUH_
