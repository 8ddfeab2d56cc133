// Decode attention over the paged KV cache, flash-decoding style. One CTA per (kv head,
// session, split): it reads its slice of the session's tokens once and serves all kGroup query
// heads that share the kv head (GQA). A thread group of kGroupThreads lanes owns one token at a
// time, each lane one vector load of kVecBytes from the K and from the V row, dequantized in
// registers. Softmax is online in fp32 (log2 domain). Quantized schemes never dequantize per
// element: q.(s*k + z) = s*(q.k) + z*sum(q) per token, and the V scale/zero are applied to the
// accumulated sums once (calibrated) or per token on the probability (online); per-channel K
// scales are folded into q (q.(s.*k + z) = (q.*s).k + q.z), per-channel V ones applied to the
// accumulated sums. K and V may be stored differently (e.g. int8 K, int4 V): a lane holds the
// same kE elements of both rows, so the V load is narrower or wider than the K load.
// With one split the CTA writes the output; otherwise normalized partials plus (max, sum) go to
// a workspace that decode_merge.cuh combines.
#ifndef KVCC_CODEGEN_DECODE_ATTENTION_CUH_
#define KVCC_CODEGEN_DECODE_ATTENTION_CUH_

#include "decode_combine.cuh"
#include "kvcc_common.cuh"

namespace kvcc {
constexpr int kVB = kVecBytes;                       // bytes of one lane's K load
constexpr int kE = kVB * 8 / KPart::kBits;           // elements one lane holds per row
constexpr int kVVB = kE * VPart::kBits / 8;          // bytes of one lane's V load
constexpr int kNVec = kHeadDim / kE;                 // lanes with data per row
constexpr int kGroupThreads = next_pow2(kNVec);      // lanes per token (<= 32, power of two)
constexpr int kGroups = kThreads / kGroupThreads;    // tokens in flight per CTA per unroll slot
constexpr int kWarps = kThreads / 32;
constexpr int kTokensPerStep = kGroups * kUnroll;
static_assert(kGroupThreads <= 32, "a cache row must fit one warp");
static_assert(kVVB >= 1 && kVVB <= 16 && kE * VPart::kBits % 8 == 0, "V load must be 1-16 bytes");

// The kernel's body, with restrict-qualified pointers (the parameter struct cannot carry them).
__device__ __forceinline__ void decode_attention(
    const io_t* __restrict__ q,  // [batch, heads, head_dim]
    const u8* __restrict__ k_cache, const u8* __restrict__ v_cache,
    const u16* __restrict__ k_params, const u16* __restrict__ v_params,  // online (scale, zero)
    const float* __restrict__ k_zp, const float* __restrict__ k_scale,
    const float* __restrict__ v_zp, const float* __restrict__ v_scale,
    const int* __restrict__ block_tables, int max_blocks,  // [batch, max_blocks]
    const int* __restrict__ seq_lens,                      // [batch]
    float softmax_scale, int tokens_per_split,
    io_t* __restrict__ out,           // [batch, heads, head_dim] (one split)
    float* __restrict__ partial_out,  // [batch, heads, splits, head_dim]
    float* __restrict__ partial_ml) { // [batch, heads, splits, 2]
  const int kvh = blockIdx.x, b = blockIdx.y, split = blockIdx.z, nsplit = gridDim.z;
  const int tid = threadIdx.x, gid = tid / kGroupThreads, li = tid % kGroupThreads;
  const bool lane_active = li < kNVec;
  const int seq_len = seq_lens[b];
  const int start = split * tokens_per_split;
  const int end = min(seq_len, start + tokens_per_split);
  const int* table = block_tables + (i64)b * max_blocks;

  float qf[kGroup][kE];
  float qsum[kGroup];
  const float qscale = softmax_scale * kLog2e;
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    const io_t* qrow = q + ((i64)b * kHeads + kvh * kGroup + g) * kHeadDim;
    float s = 0.f;
#pragma unroll
    for (int e = 0; e < kE; ++e) {
      qf[g][e] = lane_active ? load_io(qrow + li * kE + e) * qscale : 0.f;
      if constexpr (KPart::kPerChannel) {
        const int c = KPart::param(kvh, min(li * kE + e, kHeadDim - 1));
        s = fmaf(qf[g][e], k_zp[c], s);
        qf[g][e] *= k_scale[c];
      } else {
        s += qf[g][e];
      }
    }
    qsum[g] = KPart::kQuantized ? group_sum<kGroupThreads>(s) : 0.f;
  }
  float kzp = 0.f, ks = 1.f, vzp = 0.f, vs = 1.f;
  if constexpr (KPart::kCalibrated && !KPart::kPerChannel) {
    kzp = k_zp[KPart::param(kvh, 0)];
    ks = k_scale[KPart::param(kvh, 0)];
  }
  if constexpr (VPart::kCalibrated && !VPart::kPerChannel) {
    vzp = v_zp[VPart::param(kvh, 0)];
    vs = v_scale[VPart::param(kvh, 0)];
  }

  float m[kGroup], l[kGroup], acc[kGroup][kE], zacc[kGroup];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    m[g] = -1e30f;
    l[g] = 0.f;
    zacc[g] = 0.f;
#pragma unroll
    for (int e = 0; e < kE; ++e) acc[g][e] = 0.f;
  }

  // One step's loads: kUnroll tokens per thread group, K and V rows (and online params), all
  // issued before any use, so each lane has 2*kUnroll vector loads in flight. With kPrefetch
  // the next step's loads are issued before the current step is computed (register double
  // buffering), hiding the memory latency behind the arithmetic.
  struct Step {
    Raw<kVB> kr[kUnroll];
    Raw<kVVB> vr[kUnroll];
    u32 kp[kUnroll], vp[kUnroll];  // online: fp16 scale (low half), zero (high half)
    bool valid[kUnroll];
  };
  auto load_step = [&](Step& st, int base) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int t = base + u * kGroups + gid;
      st.valid[u] = t < end;
#pragma unroll
      for (int w = 0; w < Raw<kVB>::kWords; ++w) st.kr[u].w[w] = 0u;
#pragma unroll
      for (int w = 0; w < Raw<kVVB>::kWords; ++w) st.vr[u].w[w] = 0u;
      st.kp[u] = st.vp[u] = 0u;
      if (st.valid[u]) {
        const int blk = __ldg(table + t / kBlockSize);
        const int slot = t % kBlockSize;
        if (lane_active) {
          load_raw<kVB>(k_cache + KPart::row_offset(blk, kvh, slot) + li * kVB, st.kr[u]);
          load_raw<kVVB>(v_cache + VPart::row_offset(blk, kvh, slot) + li * kVVB, st.vr[u]);
        }
        const i64 pi = param_index(blk, kvh, slot);
        if constexpr (KPart::kOnline) st.kp[u] = __ldg(reinterpret_cast<const u32*>(k_params + pi));
        if constexpr (VPart::kOnline) st.vp[u] = __ldg(reinterpret_cast<const u32*>(v_params + pi));
      }
    }
  };
  Step cur;
  if constexpr (kPrefetch) load_step(cur, start);
  for (int base = start; base < end; base += kTokensPerStep) {
    Step nxt;
    if constexpr (kPrefetch) {
      load_step(nxt, base + kTokensPerStep);
    } else {
      load_step(cur, base);
    }
    const auto& kr = cur.kr;
    const auto& vr = cur.vr;
    const auto& kp = cur.kp;
    const auto& vp = cur.vp;
    const auto& valid = cur.valid;
    float s[kUnroll][kGroup];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float kf[kE];
      Unpack<kVB, KPart>::run(kr[u], kf);
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        float dot = 0.f;
#pragma unroll
        for (int e = 0; e < kE; ++e) dot = fmaf(qf[g][e], kf[e], dot);
        dot = group_sum<kGroupThreads>(dot);
        if constexpr (KPart::kPerChannel) {
          dot += qsum[g];
        } else if constexpr (KPart::kCalibrated) {
          dot = fmaf(dot, ks, qsum[g] * kzp);
        } else if constexpr (KPart::kOnline) {
          dot = fmaf(dot, half_to_float((u16)kp[u]), qsum[g] * half_to_float((u16)(kp[u] >> 16)));
        }
        s[u][g] = valid[u] ? dot : __int_as_float(0xff800000);
      }
    }
    float p[kUnroll][kGroup];
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
      float mx = m[g];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) mx = fmaxf(mx, s[u][g]);
      const float corr = exp2f(m[g] - mx);
      m[g] = mx;
      float lsum = 0.f;
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        p[u][g] = exp2f(s[u][g] - mx);
        lsum += p[u][g];
      }
      l[g] = fmaf(l[g], corr, lsum);
      zacc[g] *= corr;
#pragma unroll
      for (int e = 0; e < kE; ++e) acc[g][e] *= corr;
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float vf[kE];
      Unpack<kVVB, VPart>::run(vr[u], vf);
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        float pu = p[u][g];
        if constexpr (VPart::kOnline) {
          zacc[g] = fmaf(pu, half_to_float((u16)(vp[u] >> 16)), zacc[g]);
          pu *= half_to_float((u16)vp[u]);
        }
#pragma unroll
        for (int e = 0; e < kE; ++e) acc[g][e] = fmaf(pu, vf[e], acc[g][e]);
      }
    }
    if constexpr (kPrefetch) cur = nxt;
  }

  // Combine the thread groups: first the groups of a warp through shuffles, then the warps
  // through shared memory.
  __shared__ float sm_acc[kWarps][kGroup][kHeadDim];
  __shared__ float sm_m[kWarps][kGroup];
  __shared__ float sm_l[kWarps][kGroup];
  const int warp = tid / 32, lane = tid % 32;
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    float mw = m[g];
#pragma unroll
    for (int off = kGroupThreads; off < 32; off *= 2) {
      mw = fmaxf(mw, __shfl_xor_sync(0xffffffffu, mw, off));
    }
    const float f = exp2f(m[g] - mw);
    float lw = l[g] * f;
    float a[kE];
#pragma unroll
    for (int e = 0; e < kE; ++e) a[e] = (acc[g][e] + zacc[g]) * f;
#pragma unroll
    for (int off = kGroupThreads; off < 32; off *= 2) {
      lw += __shfl_xor_sync(0xffffffffu, lw, off);
#pragma unroll
      for (int e = 0; e < kE; ++e) a[e] += __shfl_xor_sync(0xffffffffu, a[e], off);
    }
    if (lane < kGroupThreads && lane_active) {
#pragma unroll
      for (int e = 0; e < kE; ++e) sm_acc[warp][g][li * kE + e] = a[e];
    }
    if (lane == 0) {
      sm_m[warp][g] = mw;
      sm_l[warp][g] = lw;
    }
  }
  __syncthreads();
  combine_warps_and_store<kWarps>(
      &sm_acc[0][0][0], &sm_m[0][0], &sm_l[0][0],
      [&](int d, float a, float lsum) {
        if constexpr (VPart::kPerChannel) {
          return fmaf(a, v_scale[VPart::param(kvh, d)], lsum * v_zp[VPart::param(kvh, d)]);
        } else if constexpr (VPart::kCalibrated) {
          return fmaf(a, vs, lsum * vzp);
        }
        return a;
      },
      kvh, b, split, nsplit, out, partial_out, partial_ml);
}
}  // namespace kvcc

extern "C" __global__ void __launch_bounds__(kvcc_spec::kThreads, kvcc_spec::kMinBlocks)
    kvcc_decode_attention(const kvcc::kernels::DecodeAttentionParams p) {
  kvcc::allow_dependents();
  kvcc::decode_attention(static_cast<const kvcc::io_t*>(p.q), p.cache.k, p.cache.v,
                         p.cache.k_params, p.cache.v_params, p.cache.k_zp, p.cache.k_scale,
                         p.cache.v_zp, p.cache.v_scale, p.block_tables, p.max_blocks, p.seq_lens,
                         p.softmax_scale, p.tokens_per_split, static_cast<kvcc::io_t*>(p.out),
                         p.partial_out, p.partial_ml);
}

#endif  // KVCC_CODEGEN_DECODE_ATTENTION_CUH_
