// Seeded random tensors generated on the device, for benchmarks that need a model of real
// shapes without a checkpoint (kvcc bench-memory): element i of a tensor is a pure function of
// (seed, stream, i) through a 64-bit hash (splitmix64 finalizer), turned into a normal value
// by Box-Muller. No state, so any launch shape gives the same tensor.
#ifndef KVCC_CODEGEN_OPS_RANDOM_CUH_
#define KVCC_CODEGEN_OPS_RANDOM_CUH_

#include "ops_common.cuh"

namespace kvcc_ops {

__device__ __forceinline__ u64 mix64(u64 z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in (0, 1]: the top 24 bits of the hash, offset by one so log() stays finite.
__device__ __forceinline__ float uniform(u64 h) {
  return ((float)(h >> 40) + 1.0f) * (1.0f / 16777216.0f);
}

template <typename T>
__device__ __forceinline__ void fill_normal(T* __restrict__ out, i64 n, u64 seed, float mean,
                                            float stddev) {
  KVCC_FOR_EACH(i, n) {
    const u64 h1 = mix64(seed ^ mix64((u64)i * 2 + 1));
    const u64 h2 = mix64(h1 ^ 0x9e3779b97f4a7c15ull);
    const float r = sqrtf(-2.0f * logf(uniform(h1)));
    const float z = r * cospif(2.0f * uniform(h2));
    out[i] = from_float<T>(mean + stddev * z);
  }
}

}  // namespace kvcc_ops

#define KVCC_FILL_NORMAL(T, name)                                                         \
  extern "C" __global__ void __launch_bounds__(kvcc_ops_spec::kThreads)                   \
      kvcc_fill_normal_##name(const kvcc::kernels::FillNormalParams p) {                  \
    KVCC_OPS_DEPENDENT_ENTRY();                                                           \
    kvcc_ops::fill_normal(static_cast<T*>(p.out), p.n, p.seed, p.mean, p.stddev);         \
  }
KVCC_FILL_NORMAL(float, f32)
KVCC_FILL_NORMAL(kvcc_ops::f16_t, f16)
KVCC_FILL_NORMAL(kvcc_ops::bf16_t, bf16)

#endif  // KVCC_CODEGEN_OPS_RANDOM_CUH_
