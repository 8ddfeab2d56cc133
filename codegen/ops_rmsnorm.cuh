// RMSNorm over f32 rows [tokens, n] with an f32/f16/bf16 weight, into f32 or f16: one CTA per row,
// out = w * (x / sqrt(mean(x^2) + eps)), as the CPU backend computes it (IEEE sqrt and
// division; NVRTC's defaults, no fast math). add_rms_norm below is the same with the residual
// add fused in.
#ifndef KVCC_CODEGEN_OPS_RMSNORM_CUH_
#define KVCC_CODEGEN_OPS_RMSNORM_CUH_

#include "ops_common.cuh"

namespace kvcc_ops {

// Rows of up to kRowRegs * kThreads values stay in registers between the two passes: each
// thread issues all its loads at once instead of one dependent trip per element (a decode
// step's norm is one CTA per token, so its latency is the step's). Longer rows loop.
constexpr int kRowRegs = 32;

template <typename W, typename O>
__device__ __forceinline__ void rms_norm(const float* __restrict__ x, const W* __restrict__ w,
                                         O* __restrict__ out, int n, float eps) {
  const float* row = x + (i64)blockIdx.x * n;
  O* orow = out + (i64)blockIdx.x * n;
  float ss = 0.0f;
  if (n <= kRowRegs * kThreads) {
    float v[kRowRegs];
#pragma unroll
    for (int i = 0; i < kRowRegs; ++i) {
      const int j = threadIdx.x + i * kThreads;
      v[i] = j < n ? row[j] : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < kRowRegs; ++i) ss += v[i] * v[i];
    ss = block_sum(ss);
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
#pragma unroll
    for (int i = 0; i < kRowRegs; ++i) {
      const int j = threadIdx.x + i * kThreads;
      if (j < n) orow[j] = from_float<O>(to_float(w[j]) * (v[i] * inv));
    }
    return;
  }
  for (int j = threadIdx.x; j < n; j += kThreads) ss += row[j] * row[j];
  ss = block_sum(ss);
  const float inv = 1.0f / sqrtf(ss / (float)n + eps);
  for (int j = threadIdx.x; j < n; j += kThreads) {
    orow[j] = from_float<O>(to_float(w[j]) * (row[j] * inv));
  }
}

}  // namespace kvcc_ops

// Suffix _h: f16 output (what the next GEMM reads).
#define KVCC_RMS_NORM(W, O, name)                                                         \
  extern "C" __global__ void __launch_bounds__(kvcc_ops_spec::kThreads)                   \
      kvcc_rms_norm_##name(const kvcc::kernels::RmsNormParams p) {                        \
    KVCC_OPS_DEPENDENT_ENTRY();                                                           \
    kvcc_ops::rms_norm(p.x, static_cast<const W*>(p.weight), static_cast<O*>(p.out), p.n, \
                       p.eps);                                                            \
  }
KVCC_RMS_NORM(float, float, f32)
KVCC_RMS_NORM(kvcc_ops::f16_t, float, f16)
KVCC_RMS_NORM(kvcc_ops::bf16_t, float, bf16)
KVCC_RMS_NORM(float, kvcc_ops::f16_t, f32_h)
KVCC_RMS_NORM(kvcc_ops::f16_t, kvcc_ops::f16_t, f16_h)
KVCC_RMS_NORM(kvcc_ops::bf16_t, kvcc_ops::f16_t, bf16_h)

// add_rms_norm: sum = x + residual and out = rms_norm(sum) in one pass, one CTA per row. Each
// thread reads back only the sums it wrote, so the second loop needs no extra barrier; the
// arithmetic is the CPU backend's Add followed by its RmsNorm.
namespace kvcc_ops {

template <typename X, typename W, typename O>
__device__ __forceinline__ void add_rms_norm(const X* __restrict__ x,
                                             const float* __restrict__ residual,
                                             const W* __restrict__ w, float* __restrict__ sum,
                                             O* __restrict__ out, int n, float eps) {
  const i64 base = (i64)blockIdx.x * n;
  float ss = 0.0f;
  if (n <= kRowRegs * kThreads) {  // as rms_norm: the row's sums stay in registers
    float v[kRowRegs];
#pragma unroll
    for (int i = 0; i < kRowRegs; ++i) {
      const int j = threadIdx.x + i * kThreads;
      v[i] = j < n ? to_float(x[base + j]) + residual[base + j] : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < kRowRegs; ++i) {
      const int j = threadIdx.x + i * kThreads;
      if (j < n) sum[base + j] = v[i];
      ss += v[i] * v[i];
    }
    ss = block_sum(ss);
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
#pragma unroll
    for (int i = 0; i < kRowRegs; ++i) {
      const int j = threadIdx.x + i * kThreads;
      if (j < n) out[base + j] = from_float<O>(to_float(w[j]) * (v[i] * inv));
    }
    return;
  }
  for (int j = threadIdx.x; j < n; j += kThreads) {
    const float s = to_float(x[base + j]) + residual[base + j];
    sum[base + j] = s;
    ss += s * s;
  }
  ss = block_sum(ss);
  const float inv = 1.0f / sqrtf(ss / (float)n + eps);
  for (int j = threadIdx.x; j < n; j += kThreads) {
    out[base + j] = from_float<O>(to_float(w[j]) * (sum[base + j] * inv));
  }
}

}  // namespace kvcc_ops

// The residual sum is f32 in every variant; suffix _h: f16 x and output, _sh: f32 x, f16 output.
#define KVCC_ADD_RMS_NORM(X, W, O, name)                                                  \
  extern "C" __global__ void __launch_bounds__(kvcc_ops_spec::kThreads)                   \
      kvcc_add_rms_norm_##name(const kvcc::kernels::AddRmsNormParams p) {                 \
    KVCC_OPS_DEPENDENT_ENTRY();                                                           \
    kvcc_ops::add_rms_norm(static_cast<const X*>(p.x), p.residual,                        \
                           static_cast<const W*>(p.weight), p.sum, static_cast<O*>(p.out), \
                           p.n, p.eps);                                                   \
  }
#define KVCC_ADD_RMS_NORM_ALL(W, name)                                                    \
  KVCC_ADD_RMS_NORM(float, W, float, name)                                                \
  KVCC_ADD_RMS_NORM(kvcc_ops::f16_t, W, kvcc_ops::f16_t, name##_h)                        \
  KVCC_ADD_RMS_NORM(float, W, kvcc_ops::f16_t, name##_sh)
KVCC_ADD_RMS_NORM_ALL(float, f32)
KVCC_ADD_RMS_NORM_ALL(kvcc_ops::f16_t, f16)
KVCC_ADD_RMS_NORM_ALL(kvcc_ops::bf16_t, bf16)

#endif  // KVCC_CODEGEN_OPS_RMSNORM_CUH_
