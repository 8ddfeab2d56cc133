// Elementwise and row-copy kernels of the CUDA backend, on f32 or f16 activations
// [tokens, features] (by entry point) with weights in f32, f16 or bf16: dtype casts, embedding lookup, residual add, SiLU * up,
// bias add, row gather and rotary embedding. Each computes exactly what the CPU backend's op
// does (runtime/cpu_backend.cc), in f32.
#ifndef KVCC_CODEGEN_OPS_ELEMENTWISE_CUH_
#define KVCC_CODEGEN_OPS_ELEMENTWISE_CUH_

#include "ops_common.cuh"

namespace kvcc_ops {

template <typename S, typename D>
__device__ __forceinline__ void cast(const S* __restrict__ x, D* __restrict__ y, i64 n) {
  KVCC_FOR_EACH(i, n) y[i] = from_float<D>(to_float(x[i]));
}

// out[t, :] = table[ids[t], :]; an id outside [0, vocab) leaves the row unwritten and records
// {1, t, id, vocab} in error[0..3] (the first one only; the host reports it at its next sync).
template <typename W>
__device__ __forceinline__ void embedding(const int* __restrict__ ids, const W* __restrict__ table,
                                          float* __restrict__ out, int tokens, int hidden,
                                          int vocab, int* error) {
  for (int t = blockIdx.y; t < tokens; t += gridDim.y) {
    const int id = ids[t];
    if (id < 0 || id >= vocab) {
      if (threadIdx.x == 0 && blockIdx.x == 0 && atomicCAS(error, 0, 1) == 0) {
        error[1] = t;
        error[2] = id;
        error[3] = vocab;
        __threadfence_system();
      }
      continue;
    }
    const W* row = table + (i64)id * hidden;
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < hidden; j += gridDim.x * blockDim.x) {
      out[(i64)t * hidden + j] = to_float(row[j]);
    }
  }
}

// y[r, c] += bias[c]
template <typename Y, typename W>
__device__ __forceinline__ void add_bias(Y* __restrict__ y, const W* __restrict__ bias, i64 rows,
                                         int cols) {
  KVCC_FOR_EACH(i, rows * cols) y[i] = from_float<Y>(to_float(y[i]) + to_float(bias[i % cols]));
}

// The residual add: f32 out, either operand f32 or f16 (a GEMM's f16 output).
template <typename A, typename B>
__device__ __forceinline__ void add(const A* __restrict__ a, const B* __restrict__ b,
                                    float* __restrict__ out, i64 n) {
  KVCC_FOR_EACH(i, n) out[i] = to_float(a[i]) + to_float(b[i]);
}

// silu(g) * u with silu(g) = g / (1 + exp(-g)), as the CPU backend (and transformers) write it;
// g and u rows may be strided (the two halves of one fused gate/up projection).
template <typename T>
__device__ __forceinline__ void silu_mul(const T* __restrict__ g, const T* __restrict__ u,
                                         T* __restrict__ out, i64 rows, int cols, int g_stride,
                                         int u_stride) {
  KVCC_FOR_EACH(i, rows * cols) {
    const i64 r = i / cols, c = i % cols;
    const float x = to_float(g[r * g_stride + c]);
    out[i] = from_float<T>(x / (1.0f + expf(-x)) * to_float(u[r * u_stride + c]));
  }
}

// out[i, :] = x[rows[i], :]
template <typename T>
__device__ __forceinline__ void gather_rows(const T* __restrict__ x, const int* __restrict__ rows,
                                            T* __restrict__ out, int num_rows, int cols) {
  KVCC_FOR_EACH(i, (i64)num_rows * cols) {
    const i64 r = i / cols, c = i % cols;
    out[i] = x[(i64)rows[r] * cols + c];
  }
}

// Rotary embedding, Hugging Face rotate-half: for each head, pairs (j, j + d/2) turn by
// angle = float(inv_freq[j] * position); cos and sin are taken in double and rounded to float,
// as runtime/rotary.cc does, so both backends rotate identically. `inv_freq` holds d/2 floats,
// shared by all tokens (freq_stride 0) or one row per token (dynamic scaling). Token t's input
// row starts at x + t * x_stride (a part of a fused projection); the output is contiguous.
template <typename T>
__device__ __forceinline__ void rotary(const T* __restrict__ x, T* __restrict__ out,
                                       const int* __restrict__ positions,
                                       const float* __restrict__ inv_freq, int freq_stride,
                                       int tokens, int heads, int head_dim, i64 x_stride) {
  const int half = head_dim / 2;
  const i64 width = (i64)heads * head_dim;
  KVCC_FOR_EACH(i, (i64)tokens * heads * half) {
    const i64 t = i / ((i64)heads * half);
    const int rem = (int)(i % ((i64)heads * half));
    const int h = rem / half, j = rem % half;
    const float angle = inv_freq[t * freq_stride + j] * (float)positions[t];
    const float c = (float)cos((double)angle), s = (float)sin((double)angle);
    const i64 in = t * x_stride + (i64)h * head_dim, o = t * width + (i64)h * head_dim;
    const float a = to_float(x[in + j]), b = to_float(x[in + j + half]);
    out[o + j] = from_float<T>(a * c - b * s);
    out[o + j + half] = from_float<T>(b * c + a * s);
  }
}

}  // namespace kvcc_ops

#define KVCC_CAST(S, D, name)                                                             \
  extern "C" __global__ void __launch_bounds__(kvcc_ops_spec::kThreads)                   \
      kvcc_cast_##name(const kvcc::kernels::CastParams p) {                               \
    KVCC_OPS_DEPENDENT_ENTRY();                                                           \
    kvcc_ops::cast(static_cast<const S*>(p.x), static_cast<D*>(p.y), p.n);                \
  }
KVCC_CAST(float, kvcc_ops::f16_t, f32_f16)
KVCC_CAST(float, kvcc_ops::bf16_t, f32_bf16)
KVCC_CAST(kvcc_ops::f16_t, float, f16_f32)
KVCC_CAST(kvcc_ops::bf16_t, float, bf16_f32)
KVCC_CAST(kvcc_ops::f16_t, kvcc_ops::bf16_t, f16_bf16)
KVCC_CAST(kvcc_ops::bf16_t, kvcc_ops::f16_t, bf16_f16)

#define KVCC_EMBEDDING(W, name)                                                           \
  extern "C" __global__ void __launch_bounds__(kvcc_ops_spec::kThreads)                   \
      kvcc_embedding_##name(const kvcc::kernels::EmbeddingParams p) {                     \
    KVCC_OPS_DEPENDENT_ENTRY();                                                           \
    kvcc_ops::embedding(p.ids, static_cast<const W*>(p.table), p.out, p.tokens, p.hidden, \
                        p.vocab, p.error);                                                \
  }
KVCC_EMBEDDING(float, f32)
KVCC_EMBEDDING(kvcc_ops::f16_t, f16)
KVCC_EMBEDDING(kvcc_ops::bf16_t, bf16)

// Suffix _h: the activation (y) is f16.
#define KVCC_ADD_BIAS(Y, W, name)                                                         \
  extern "C" __global__ void __launch_bounds__(kvcc_ops_spec::kThreads)                   \
      kvcc_add_bias_##name(const kvcc::kernels::AddBiasParams p) {                        \
    KVCC_OPS_DEPENDENT_ENTRY();                                                           \
    kvcc_ops::add_bias(static_cast<Y*>(p.y), static_cast<const W*>(p.bias), p.rows, p.cols); \
  }
KVCC_ADD_BIAS(float, float, f32)
KVCC_ADD_BIAS(float, kvcc_ops::f16_t, f16)
KVCC_ADD_BIAS(float, kvcc_ops::bf16_t, bf16)
KVCC_ADD_BIAS(kvcc_ops::f16_t, float, f32_h)
KVCC_ADD_BIAS(kvcc_ops::f16_t, kvcc_ops::f16_t, f16_h)
KVCC_ADD_BIAS(kvcc_ops::f16_t, kvcc_ops::bf16_t, bf16_h)

// kvcc_add: f32 + f32; _hs: f16 + f32, _sh: f32 + f16, _hh: f16 + f16 (always an f32 sum).
#define KVCC_ADD(A, B, name)                                                              \
  extern "C" __global__ void __launch_bounds__(kvcc_ops_spec::kThreads)                   \
      kvcc_add##name(const kvcc::kernels::BinaryParams p) {                               \
    KVCC_OPS_DEPENDENT_ENTRY();                                                           \
    kvcc_ops::add(static_cast<const A*>(p.a), static_cast<const B*>(p.b), p.out, p.n);    \
  }
KVCC_ADD(float, float, )
KVCC_ADD(kvcc_ops::f16_t, float, _hs)
KVCC_ADD(float, kvcc_ops::f16_t, _sh)
KVCC_ADD(kvcc_ops::f16_t, kvcc_ops::f16_t, _hh)

// Per activation dtype: no suffix f32, _f16 f16.
#define KVCC_SILU_MUL(T, name)                                                            \
  extern "C" __global__ void __launch_bounds__(kvcc_ops_spec::kThreads)                   \
      kvcc_silu_mul##name(const kvcc::kernels::SiluMulParams p) {                         \
    KVCC_OPS_DEPENDENT_ENTRY();                                                           \
    kvcc_ops::silu_mul(static_cast<const T*>(p.a), static_cast<const T*>(p.b),            \
                       static_cast<T*>(p.out), p.rows, p.cols, p.a_stride, p.b_stride);   \
  }
KVCC_SILU_MUL(float, )
KVCC_SILU_MUL(kvcc_ops::f16_t, _f16)

#define KVCC_GATHER_ROWS(T, name)                                                         \
  extern "C" __global__ void __launch_bounds__(kvcc_ops_spec::kThreads)                   \
      kvcc_gather_rows##name(const kvcc::kernels::GatherRowsParams p) {                   \
    KVCC_OPS_DEPENDENT_ENTRY();                                                           \
    kvcc_ops::gather_rows(static_cast<const T*>(p.x), p.rows, static_cast<T*>(p.out),     \
                          p.num_rows, p.cols);                                            \
  }
KVCC_GATHER_ROWS(float, )
KVCC_GATHER_ROWS(kvcc_ops::f16_t, _f16)

#define KVCC_ROTARY(T, name)                                                              \
  extern "C" __global__ void __launch_bounds__(kvcc_ops_spec::kThreads)                   \
      kvcc_rotary##name(const kvcc::kernels::RotaryEmbeddingParams p) {                   \
    KVCC_OPS_DEPENDENT_ENTRY();                                                           \
    kvcc_ops::rotary(static_cast<const T*>(p.x), static_cast<T*>(p.out), p.positions,     \
                     p.inv_freq, p.freq_stride, p.tokens, p.heads, p.head_dim, p.x_stride); \
  }
KVCC_ROTARY(float, )
KVCC_ROTARY(kvcc_ops::f16_t, _f16)

#endif  // KVCC_CODEGEN_OPS_ELEMENTWISE_CUH_
