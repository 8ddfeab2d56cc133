// Next-token selection on the GPU, one CTA per row of logits: exactly runtime/sampler.cc's
// procedure (repetition penalty, temperature, top-k keeping ties, top-p over the sorted
// prefix, then the first id in id order whose cumulative probability exceeds the host's draw),
// in double precision like the CPU, so both pick the same token from the same logits and draw
// except where the draw lies within rounding of a cumulative boundary, or top-p cuts inside a
// group of exactly equal scores (the CPU keeps a prefix of the group by id, this keeps it all).
// Thresholds are found by bisection over the doubles' order-preserving 64-bit keys, so no sort.
#ifndef KVCC_CODEGEN_OPS_SAMPLE_CUH_
#define KVCC_CODEGEN_OPS_SAMPLE_CUH_

#include "ops_common.cuh"

namespace kvcc_ops {

// Order-preserving map of doubles (no NaN) to unsigned keys, and back.
__device__ __forceinline__ u64 double_key(double d) {
  const u64 u = (u64)__double_as_longlong(d + 0.0);  // -0 -> +0: they compare equal
  return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
}
__device__ __forceinline__ double key_double(u64 k) {
  const u64 u = (k & 0x8000000000000000ull) ? (k & 0x7fffffffffffffffull) : ~k;
  return __longlong_as_double((long long)u);
}

template <typename T>
__device__ __forceinline__ T shfl_xor(T v, int off) { return __shfl_xor_sync(0xffffffffu, v, off); }

// Block-wide reductions over kThreads threads; every thread gets the result.
template <typename T, typename Op>
__device__ __forceinline__ T block_reduce(T v, Op op) {
  __shared__ T partial[32];
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v = op(v, shfl_xor(v, off));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  T total = partial[0];
  for (int w = 1; w < kThreads / 32; ++w) total = op(total, partial[w]);
  return total;
}
struct SumOp { template <typename T> __device__ T operator()(T a, T b) const { return a + b; } };
struct MinOp { template <typename T> __device__ T operator()(T a, T b) const { return b < a ? b : a; } };
struct MaxOp { template <typename T> __device__ T operator()(T a, T b) const { return a < b ? b : a; } };

// The sampler's score of token i: the logit, penalized when i was seen, over the temperature
// (1 for greedy).
__device__ __forceinline__ double sample_score(const float* x, int i, const u32* seen,
                                               bool penalize, double penalty, double temperature) {
  double s = (double)x[i];
  if (penalize && (seen[i / 32] >> (i % 32) & 1u)) s = s < 0 ? s * penalty : s / penalty;
  return s / temperature;
}

// exp(score - top) of token i when its score's key is at least `thr`, else 0.
__device__ __forceinline__ double kept_weight(const float* x, int i, const u32* seen,
                                              bool penalize, double penalty, double temperature,
                                              u64 thr, double top) {
  const double s = sample_score(x, i, seen, penalize, penalty, temperature);
  return double_key(s) >= thr ? exp(s - top) : 0.0;
}

__device__ __forceinline__ void sample_row(const kvcc::kernels::SampleParams& p, int row) {
  __shared__ u32 seen[kvcc::kernels::kSampleMaxVocab / 32];
  __shared__ double chunk_mass[kThreads];
  const kvcc::kernels::SampleRowParams rp = p.rows[row];
  const float* x = p.logits + (i64)row * p.vocab;
  const int vocab = p.vocab;
  const bool penalize = rp.repetition_penalty != 1.0;
  if (penalize) {
    for (int w = threadIdx.x; w < (vocab + 31) / 32; w += kThreads) seen[w] = 0;
    __syncthreads();
    for (int h = p.history_start[row] + threadIdx.x; h < p.history_start[row + 1]; h += kThreads) {
      const int t = p.history[h];
      if (t >= 0 && t < vocab) atomicOr(&seen[t / 32], 1u << (t % 32));
    }
    __syncthreads();
  }
  const bool greedy = rp.temperature == 0.0;
  const double temp = greedy ? 1.0 : rp.temperature;

  // Pass 1: NaN, the highest score (lowest id on ties, like std::max_element) and the lowest.
  int nan_at = vocab;
  u64 best = 0, low = ~0ull;
  int best_id = vocab;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    if (x[i] != x[i]) {
      nan_at = min(nan_at, i);
      continue;
    }
    const u64 k = double_key(sample_score(x, i, seen, penalize, rp.repetition_penalty, temp));
    if (k > best || (k == best && i < best_id)) {
      best = k;
      best_id = i;
    }
    low = k < low ? k : low;
  }
  nan_at = block_reduce(nan_at, MinOp());
  if (nan_at < vocab) {
    if (threadIdx.x == 0) p.out[row] = -1 - nan_at;
    return;
  }
  const u64 top_key = block_reduce(best, MaxOp());
  int mine = best == top_key ? best_id : vocab;
  mine = block_reduce(mine, MinOp());
  if (greedy) {
    if (threadIdx.x == 0) p.out[row] = mine;
    return;
  }
  low = block_reduce(low, MinOp());
  const double top = key_double(top_key);

  // Top-k: the k-th highest score is the highest key with at least k scores at or above it.
  u64 thr = low;
  if (rp.top_k > 0 && rp.top_k < vocab) {
    u64 lo = low, hi = top_key;
    while (lo < hi) {
      const u64 mid = lo + (hi - lo + 1) / 2;
      int count = 0;
#pragma unroll 1
      for (int i = threadIdx.x; i < vocab; i += kThreads) {
        count += double_key(sample_score(x, i, seen, penalize, rp.repetition_penalty, temp)) >= mid;
      }
      count = block_reduce(count, SumOp());
      if (count >= rp.top_k) lo = mid; else hi = mid - 1;
    }
    thr = lo;
  }
  // Top-p: the highest key whose kept mass at or above it still reaches top_p of the total.
  if (rp.top_p < 1.0) {
    double total = 0;
#pragma unroll 1
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      total += kept_weight(x, i, seen, penalize, rp.repetition_penalty, temp, thr, top);
    }
    total = block_reduce(total, SumOp());
    const double want = rp.top_p * total;
    u64 lo = thr, hi = top_key;
    while (lo < hi) {
      const u64 mid = lo + (hi - lo + 1) / 2;
      double mass = 0;
#pragma unroll 1
      for (int i = threadIdx.x; i < vocab; i += kThreads) {
        mass += kept_weight(x, i, seen, penalize, rp.repetition_penalty, temp, mid, top);
      }
      mass = block_reduce(mass, SumOp());
      if (mass >= want) lo = mid; else hi = mid - 1;
    }
    thr = lo;
  }

  // The draw: contiguous id chunks per thread, their masses scanned in id order.
  const int chunk = (vocab + kThreads - 1) / kThreads;
  const int begin = min(vocab, (int)threadIdx.x * chunk), end = min(vocab, begin + chunk);
  double mass = 0;
  int last = -1;
#pragma unroll 1
  for (int i = begin; i < end; ++i) {
    const double w = kept_weight(x, i, seen, penalize, rp.repetition_penalty, temp, thr, top);
    mass += w;
    if (w > 0) last = i;
  }
  chunk_mass[threadIdx.x] = mass;
  last = block_reduce(last, MaxOp());  // its __syncthreads also publishes chunk_mass
  if (threadIdx.x != 0) return;
  double total = 0;
#pragma unroll 1
  for (int t = 0; t < kThreads; ++t) total += chunk_mass[t];
  const double target = rp.uniform * total;
  double cum = 0;
#pragma unroll 1
  for (int t = 0; t < kThreads; ++t) {
    if (target >= cum + chunk_mass[t]) {
      cum += chunk_mass[t];
      continue;
    }
    const int b = min(vocab, t * chunk), e = min(vocab, b + chunk);
#pragma unroll 1
    for (int i = b; i < e; ++i) {
      const double w = kept_weight(x, i, seen, penalize, rp.repetition_penalty, temp, thr, top);
      cum += w;
      if (w > 0 && target < cum) {
        p.out[row] = i;
        return;
      }
    }
    break;
  }
  p.out[row] = last;  // the draw fell past the summed mass by rounding
}

}  // namespace kvcc_ops

extern "C" __global__ void __launch_bounds__(kvcc_ops_spec::kThreads)
    kvcc_sample(const kvcc::kernels::SampleParams p) {
  KVCC_OPS_DEPENDENT_ENTRY();
  for (int row = blockIdx.x; row < p.num_rows; row += gridDim.x) {
    kvcc_ops::sample_row(p, row);
    __syncthreads();
  }
}

// The next token's negative log-likelihood for perplexity, one CTA per row, in double precision
// like runtime/log_softmax.cc: only a double per row leaves the device.
extern "C" __global__ void __launch_bounds__(kvcc_ops_spec::kThreads)
    kvcc_target_nll(const kvcc::kernels::TargetNllParams p) {
  KVCC_OPS_DEPENDENT_ENTRY();
  using namespace kvcc_ops;
  for (int row = blockIdx.x; row < p.num_rows; row += gridDim.x) {
    const float* x = p.logits + (long long)row * p.vocab;
    const int target = p.targets[row];
    if (target < 0) {
      if (threadIdx.x == 0) p.out[row] = 0.0;
      continue;
    }
    float m = __int_as_float(0xff800000);  // -inf
    for (int i = threadIdx.x; i < p.vocab; i += kThreads) m = fmaxf(m, x[i]);
    m = block_reduce(m, MaxOp());
    double z = 0.0;
    for (int i = threadIdx.x; i < p.vocab; i += kThreads) z += exp((double)x[i] - (double)m);
    z = block_reduce(z, SumOp());
    if (threadIdx.x == 0) p.out[row] = log(z) + (double)m - (double)x[target];
  }
}

#endif  // KVCC_CODEGEN_OPS_SAMPLE_CUH_
