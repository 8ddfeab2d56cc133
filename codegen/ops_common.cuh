// Shared device helpers of the runtime's non-attention kernels (ops_*.cuh): element types,
// f16/bf16 <-> f32 conversions with round-to-nearest-even (what ir/half.h does on the
// host), a block-wide sum and grid-stride loops. No system headers, so NVRTC needs no include
// paths (ops_kernels.cc hands it the embedded codegen files as headers).
#ifndef KVCC_CODEGEN_OPS_COMMON_CUH_
#define KVCC_CODEGEN_OPS_COMMON_CUH_

// The CTA size of every ops kernel: ops_kernels.cc's NVRTC prelude defines it and then includes
// the ops templates; the default makes each template a complete translation unit that an
// editor or `nvcc -c` checks on its own.
#ifndef KVCC_OPS_THREADS
#define KVCC_OPS_THREADS 256
#endif

#include "grid_dependency.cuh"
#include "ops_params.h"

namespace kvcc_ops_spec {
constexpr int kThreads = KVCC_OPS_THREADS;
}  // namespace kvcc_ops_spec

// Grid-stride loops over n elements.
#define KVCC_FOR_EACH(i, n) \
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

namespace kvcc_ops {
using namespace kvcc_ops_spec;

struct f16_t { u16 bits; };
struct bf16_t { u16 bits; };

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(f16_t v) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
  return f;
}
__device__ __forceinline__ float to_float(bf16_t v) { return __uint_as_float((u32)v.bits << 16); }

template <typename T> __device__ __forceinline__ T from_float(float f);
template <> __device__ __forceinline__ float from_float<float>(float f) { return f; }
template <> __device__ __forceinline__ f16_t from_float<f16_t>(float f) {
  f16_t h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(f));
  return h;
}
template <> __device__ __forceinline__ bf16_t from_float<bf16_t>(float f) {
  // Round to nearest even; NaN stays a quiet NaN (ir/half.h FloatToBf16).
  const u32 u = __float_as_uint(f);
  bf16_t b;
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    b.bits = (u16)((u >> 16) | 0x40u);
  } else {
    b.bits = (u16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
  return b;
}

// Programmatic dependent launch (sm_90+). The CUDA backend launches the step's ops kernels
// with the programmatic stream serialization attribute, so a kernel may start while the one
// before it still runs: grid_dependency_wait() holds the calling thread until the previous
// grid has finished and its writes are visible, so every ops kernel calls it before it reads
// an activation or writes anything (only weights may be read before it: the GEMV streams its
// first weight chunks there). Every kernel waits, so each grid's end implies the end of all
// before it. allow_dependents() lets the next kernel launch (its CTAs take free SM slots and
// sit in their own wait): the small kernels call it first thing, so the next GEMV's weight
// loads overlap them; the GEMV calls it after its wait, so at most one GEMV runs ahead.
using kvcc_grid::allow_dependents;
using kvcc_grid::grid_dependency_wait;

// Sum over the block (kThreads threads, a multiple of 32); every thread gets the result.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float partial[32];
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < kThreads / 32; ++w) total += partial[w];
  return total;
}

}  // namespace kvcc_ops

// The first statement of a small ops kernel (see grid_dependency_wait).
#define KVCC_OPS_DEPENDENT_ENTRY() \
  do {                            \
    kvcc_ops::allow_dependents(); \
    kvcc_ops::grid_dependency_wait(); \
  } while (0)

#endif  // KVCC_CODEGEN_OPS_COMMON_CUH_
