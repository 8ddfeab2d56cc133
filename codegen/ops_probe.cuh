// A read-bandwidth probe for the benchmarks' floors (`kvcc bench decode`): every 16-byte word
// of a buffer is loaded once, four loads in flight per thread, and folded into a value that is
// only stored when it hits one fixed pattern, so the loads cannot be dropped.
#ifndef KVCC_CODEGEN_OPS_PROBE_CUH_
#define KVCC_CODEGEN_OPS_PROBE_CUH_

#include "ops_common.cuh"

extern "C" __global__ void __launch_bounds__(kvcc_ops_spec::kThreads)
    kvcc_read_probe(const kvcc::kernels::ReadProbeParams p) {
  const uint4* __restrict__ d = static_cast<const uint4*>(p.data);
  const i64 stride = (i64)gridDim.x * blockDim.x;
  u32 acc = 0;
  i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < p.words; i += 4 * stride) {
    const uint4 a = d[i], b = d[i + stride], c = d[i + 2 * stride], e = d[i + 3 * stride];
    acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ e.x ^ e.y ^
           e.z ^ e.w;
  }
  for (; i < p.words; i += stride) {
    const uint4 a = d[i];
    acc ^= a.x ^ a.y ^ a.z ^ a.w;
  }
  if (acc == 0x9e3779b9u) atomicAdd(p.sink, 1ull);
}

#endif  // KVCC_CODEGEN_OPS_PROBE_CUH_
