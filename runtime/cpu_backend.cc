#include "runtime/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ir/group_quant.h"
#include "ir/half.h"
#include "ir/status_macros.h"
#include "runtime/half_convert.h"
#include "runtime/op_operands.h"
#include "runtime/w4_repack.h"

namespace kvcc::runtime {
namespace {

using ir::DType;

// Four floats as one GCC/Clang vector (an SSE register, available on every x86-64 without
// -march flags). Four accumulators hide the add latency; the reduction order is fixed, so
// results do not depend on the compiler's choices.
typedef float Vec4 __attribute__((vector_size(16)));

inline Vec4 Load4(const float* p) {
  Vec4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline float Dot(const float* a, const float* b, int64_t n) {
  Vec4 acc0 = {}, acc1 = {}, acc2 = {}, acc3 = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 += Load4(a + i) * Load4(b + i);
    acc1 += Load4(a + i + 4) * Load4(b + i + 4);
    acc2 += Load4(a + i + 8) * Load4(b + i + 8);
    acc3 += Load4(a + i + 12) * Load4(b + i + 12);
  }
  for (; i + 4 <= n; i += 4) acc0 += Load4(a + i) * Load4(b + i);
  const Vec4 acc = (acc0 + acc1) + (acc2 + acc3);
  float s = (acc[0] + acc[2]) + (acc[1] + acc[3]);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Four dot products of x with rows w0..w3 sharing each load of x (the GEMM micro-kernel).
inline void Dot4(const float* x, const float* w0, const float* w1, const float* w2,
                 const float* w3, int64_t n, float* out) {
  Vec4 a0 = {}, a1 = {}, a2 = {}, a3 = {};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const Vec4 xv = Load4(x + i);
    a0 += xv * Load4(w0 + i);
    a1 += xv * Load4(w1 + i);
    a2 += xv * Load4(w2 + i);
    a3 += xv * Load4(w3 + i);
  }
  float s0 = (a0[0] + a0[2]) + (a0[1] + a0[3]);
  float s1 = (a1[0] + a1[2]) + (a1[1] + a1[3]);
  float s2 = (a2[0] + a2[2]) + (a2[1] + a2[3]);
  float s3 = (a3[0] + a3[2]) + (a3[1] + a3[3]);
  for (; i < n; ++i) {
    s0 += x[i] * w0[i];
    s1 += x[i] * w1[i];
    s2 += x[i] * w2[i];
    s3 += x[i] * w3[i];
  }
  out[0] = s0;
  out[1] = s1;
  out[2] = s2;
  out[3] = s3;
}

using Dot4Fn = void (*)(const float*, const float*, const float*, const float*, const float*,
                       int64_t, float*);

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// Dot4 eight lanes wide for CPUs with AVX (checked at run time; the default build targets plain
// x86-64). Multiplies and adds stay separate instructions (no FMA), like the SSE path.
__attribute__((target("avx"))) void Dot4Avx(const float* x, const float* w0, const float* w1,
                                            const float* w2, const float* w3, int64_t n,
                                            float* out) {
  typedef float V8 __attribute__((vector_size(32)));
  V8 a0 = {}, a1 = {}, a2 = {}, a3 = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    V8 xv, v0, v1, v2, v3;
    std::memcpy(&xv, x + i, 32);
    std::memcpy(&v0, w0 + i, 32);
    std::memcpy(&v1, w1 + i, 32);
    std::memcpy(&v2, w2 + i, 32);
    std::memcpy(&v3, w3 + i, 32);
    a0 += xv * v0;
    a1 += xv * v1;
    a2 += xv * v2;
    a3 += xv * v3;
  }
  float s[4];
  const V8* acc[4] = {&a0, &a1, &a2, &a3};
  for (int k = 0; k < 4; ++k) {
    const V8& a = *acc[k];
    s[k] = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
  }
  for (; i < n; ++i) {
    s[0] += x[i] * w0[i];
    s[1] += x[i] * w1[i];
    s[2] += x[i] * w2[i];
    s[3] += x[i] * w3[i];
  }
  std::memcpy(out, s, sizeof(s));
}

Dot4Fn PickDot4() {
  return __builtin_cpu_supports("avx") ? Dot4Avx : Dot4;
}
#else
Dot4Fn PickDot4() { return Dot4; }
#endif

// Below this many multiply-adds an op runs on the calling thread: waking the pool costs more
// than it saves (decode steps of small models).
constexpr int64_t kParallelWork = int64_t{1} << 15;

// y += a * x over n floats.
inline void Axpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// Converts `n` elements of a float-typed tensor starting at element `offset` to f32.
void ToFloat(DType dtype, const void* base, int64_t offset, int64_t n, float* out) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(out, static_cast<const float*>(base) + offset, n * sizeof(float));
      return;
    case DType::kF16:
      ConvertHalfRow(static_cast<const uint16_t*>(base) + offset, out, n);
      return;
    case DType::kBF16:
      ir::Bf16ToFloatRow(static_cast<const uint16_t*>(base) + offset, out, n);
      return;
    default:
      return;  // callers check dtypes first
  }
}

}  // namespace

CpuBackend::CpuBackend(int threads) : pool_(threads) {}

absl::StatusOr<Tensor> CpuBackend::Allocate(DType dtype, std::vector<int64_t> shape) {
  for (int64_t d : shape) {
    if (d < 0) return absl::InvalidArgumentError("cpu backend: negative dimension in allocation");
  }
  Tensor t = Tensor::HostZeros(dtype, shape);
  if (!t.defined()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cpu backend: out of host memory allocating a ", ir::DTypeName(dtype), "[",
                     absl::StrJoin(shape, ","), "] tensor"));
  }
  return t;
}

absl::StatusOr<Tensor> CpuBackend::Output(std::vector<int64_t> shape) {
  Tensor t = Tensor::HostUninitialized(DType::kF32, shape);
  if (!t.defined()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cpu backend: out of host memory allocating an f32[", absl::StrJoin(shape, ","),
        "] result"));
  }
  return t;
}

absl::StatusOr<Tensor> CpuBackend::FromHost(const Tensor& host) {
  KVCC_RETURN_IF_ERROR(CheckResident(host, Device::kCpu, "tensor"));
  return host;
}

absl::StatusOr<Tensor> CpuBackend::ToHost(const Tensor& t) {
  KVCC_RETURN_IF_ERROR(CheckResident(t, Device::kCpu, "tensor"));
  return t;
}

absl::StatusOr<std::unique_ptr<KvCache>> CpuBackend::CreateKvCache(const KvCacheSpec& spec) {
  return KvCache::CreateHost(spec);
}

absl::StatusOr<Tensor> CpuBackend::Embedding(const Tensor& ids, const Tensor& table) {
  KVCC_RETURN_IF_ERROR(CheckEmbeddingOperands(ids, table, Device::kCpu));
  const int64_t tokens = ids.dim(0), vocab = table.dim(0), hidden = table.dim(1);
  const int32_t* id = ids.data<int32_t>();
  for (int64_t t = 0; t < tokens; ++t) {
    if (id[t] < 0 || id[t] >= vocab) {
      return absl::OutOfRangeError(absl::StrCat("embedding: token id ", id[t], " at index ", t,
                                                " is outside the vocabulary of ", vocab));
    }
  }
  KVCC_ASSIGN_OR_RETURN(auto out, Output({tokens, hidden}));
  float* o = out.data<float>();
  for (int64_t t = 0; t < tokens; ++t) {
    ToFloat(table.dtype(), table.raw(), int64_t{id[t]} * hidden, hidden, o + t * hidden);
  }
  return out;
}

absl::StatusOr<Tensor> CpuBackend::RmsNorm(const Tensor& x, const Tensor& weight, float eps) {
  KVCC_RETURN_IF_ERROR(CheckRmsNormOperands(x, weight, Device::kCpu));
  const int64_t tokens = x.dim(0), n = x.dim(1);
  KVCC_ASSIGN_OR_RETURN(auto out, Output({tokens, n}));
  std::vector<float> w(n);
  ToFloat(weight.dtype(), weight.raw(), 0, n, w.data());
  const float* xi = x.data<float>();
  float* o = out.data<float>();
  pool_.ParallelFor(tokens, 16, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const float* row = xi + t * n;
      const float var = Dot(row, row, n) / static_cast<float>(n);
      const float inv = 1.0f / std::sqrt(var + eps);
      for (int64_t j = 0; j < n; ++j) o[t * n + j] = w[j] * (row[j] * inv);
    }
  });
  return out;
}

absl::StatusOr<std::vector<Tensor>> CpuBackend::AddRmsNorm(const Tensor& x,
                                                           const Tensor& residual,
                                                           const Tensor& weight, float eps) {
  KVCC_RETURN_IF_ERROR(CheckAddRmsNormOperands(x, residual, weight, Device::kCpu));
  const int64_t tokens = x.dim(0), n = x.dim(1);
  KVCC_ASSIGN_OR_RETURN(auto sum, Output({tokens, n}));
  KVCC_ASSIGN_OR_RETURN(auto out, Output({tokens, n}));
  std::vector<float> w(n);
  ToFloat(weight.dtype(), weight.raw(), 0, n, w.data());
  const float* a = x.data<float>();
  const float* b = residual.data<float>();
  float* s = sum.data<float>();
  float* o = out.data<float>();
  // The same arithmetic as Add followed by RmsNorm, row by row, so the results are identical.
  pool_.ParallelFor(tokens, 16, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      float* row = s + t * n;
      for (int64_t j = 0; j < n; ++j) row[j] = a[t * n + j] + b[t * n + j];
      const float var = Dot(row, row, n) / static_cast<float>(n);
      const float inv = 1.0f / std::sqrt(var + eps);
      for (int64_t j = 0; j < n; ++j) o[t * n + j] = w[j] * (row[j] * inv);
    }
  });
  return std::vector<Tensor>{std::move(sum), std::move(out)};
}

absl::StatusOr<Tensor> CpuBackend::Linear(const Tensor& x, const Tensor& weight,
                                          const Tensor* bias) {
  KVCC_RETURN_IF_ERROR(CheckActivation(x, Device::kCpu, "linear input"));
  KVCC_RETURN_IF_ERROR(CheckWeight(weight, Device::kCpu, "linear weight"));
  if (weight.rank() != 2 || weight.dim(1) != x.dim(1)) {
    return absl::InvalidArgumentError(absl::StrCat("linear: weight ", weight.ToString(),
                                                   " does not take input ", x.ToString()));
  }
  const int64_t in = x.dim(1);
  const DType wd = weight.dtype();
  const void* wbase = weight.raw();
  return LinearRows(x, weight.dim(0), bias,
                    [&](int64_t r0, int64_t r1, float* scratch) -> const float* {
                      if (wd == DType::kF32) return static_cast<const float*>(wbase) + r0 * in;
                      ToFloat(wd, wbase, r0 * in, (r1 - r0) * in, scratch);
                      return scratch;
                    });
}

absl::StatusOr<Tensor> CpuBackend::QuantizedLinear(const Tensor& x, const QuantizedWeight& w,
                                                   const Tensor* bias) {
  KVCC_RETURN_IF_ERROR(CheckActivation(x, Device::kCpu, "linear input"));
  KVCC_RETURN_IF_ERROR(CheckQuantizedWeight(x, w, Device::kCpu));
  const int64_t in = x.dim(1), group = w.group_size, groups = in / group;
  if (w.packed) {
    // LinearRows asks for 16-row tiles, one packed strip each (out is a multiple of 16).
    const auto* words = static_cast<const uint32_t*>(w.codes->raw());
    const auto* sz = static_cast<const uint32_t*>(w.scales->raw());
    return LinearRows(x, w.out(), bias,
                      [&](int64_t r0, int64_t, float* scratch) -> const float* {
                        DequantizeW4Strip(words, sz, in, group, r0 / 16, scratch);
                        return scratch;
                      });
  }
  const uint8_t* codes = static_cast<const uint8_t*>(w.codes->raw());
  const uint8_t* zeros = w.zeros == nullptr ? nullptr : static_cast<const uint8_t*>(w.zeros->raw());
  const DType sd = w.scales->dtype();
  const void* scales = w.scales->raw();
  // Dequantized in f32 exactly as the formats define it, (q - z) * s, then the float GEMM: the
  // result equals Linear on the dequantized weight.
  return LinearRows(x, w.codes->dim(0), bias,
                    [&](int64_t r0, int64_t r1, float* scratch) -> const float* {
                      thread_local std::vector<float> s;
                      s.resize(groups);
                      for (int64_t r = r0; r < r1; ++r) {
                        ToFloat(sd, scales, r * groups, groups, s.data());
                        float* row = scratch + (r - r0) * in;
                        for (int64_t g = 0; g < groups; ++g) {
                          const int z = zeros == nullptr ? 0 : ir::GetI4(zeros, r * groups + g);
                          const int64_t base = r * in + g * group;
                          for (int64_t j = 0; j < group; ++j) {
                            row[g * group + j] =
                                static_cast<float>(ir::GetI4(codes, base + j) - z) * s[g];
                          }
                        }
                      }
                      return scratch;
                    });
}

absl::StatusOr<Tensor> CpuBackend::LinearRows(const Tensor& x, int64_t out_f, const Tensor* bias,
                                              const RowSource& rows) {
  const int64_t tokens = x.dim(0), in = x.dim(1);
  std::vector<float> b;
  if (bias != nullptr) {
    KVCC_RETURN_IF_ERROR(CheckWeight(*bias, Device::kCpu, "linear bias"));
    if (bias->NumElements() != out_f) {
      return absl::InvalidArgumentError(absl::StrCat("linear: bias ", bias->ToString(), " must have ",
                                                     out_f, " elements"));
    }
    b.resize(out_f);
    ToFloat(bias->dtype(), bias->raw(), 0, out_f, b.data());
  }
  KVCC_ASSIGN_OR_RETURN(auto out, Output({tokens, out_f}));
  const float* xs = x.data<float>();
  float* o = out.data<float>();
  // Rows of the weight are converted a tile at a time into thread-local scratch and then used
  // for every token, so each weight byte is read once per call whatever the token count.
  constexpr int64_t kTile = 16;  // one strip of the packed 4-bit layout: QuantizedLinear needs it
  static const Dot4Fn dot4 = PickDot4();
  const int64_t tiles = (out_f + kTile - 1) / kTile;
  auto run = [&](int64_t tb, int64_t te) {
    thread_local std::vector<float> scratch;
    scratch.resize(kTile * in);
    for (int64_t tile = tb; tile < te; ++tile) {
      const int64_t r0 = tile * kTile, r1 = std::min(out_f, r0 + kTile);
      const float* w = rows(r0, r1, scratch.data());
      for (int64_t t = 0; t < tokens; ++t) {
        const float* xr = xs + t * in;
        float* orow = o + t * out_f;
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) {
          const float* wr = w + (r - r0) * in;
          dot4(xr, wr, wr + in, wr + 2 * in, wr + 3 * in, in, orow + r);
        }
        for (; r < r1; ++r) orow[r] = Dot(xr, w + (r - r0) * in, in);
        if (!b.empty()) {
          for (int64_t rr = r0; rr < r1; ++rr) orow[rr] += b[rr];
        }
      }
    }
  };
  // Each chunk gets at least kParallelWork multiply-adds, so many cores do not split a small
  // matrix into pieces cheaper than waking a thread.
  const int64_t tile_work = std::max<int64_t>(1, tokens * kTile * in);
  pool_.ParallelFor(tiles, (kParallelWork + tile_work - 1) / tile_work, run);
  return out;
}

absl::StatusOr<std::vector<Tensor>> CpuBackend::Split(const Tensor& x,
                                                      const std::vector<int64_t>& sizes) {
  KVCC_RETURN_IF_ERROR(CheckSplitOperands(x, sizes, Device::kCpu));
  const int64_t total = x.dim(1);
  const int64_t tokens = x.dim(0);
  std::vector<Tensor> outs;
  int64_t col = 0;
  for (int64_t s : sizes) {
    KVCC_ASSIGN_OR_RETURN(auto out, Output({tokens, s}));
    for (int64_t t = 0; t < tokens; ++t) {
      std::memcpy(out.data<float>() + t * s, x.data<float>() + t * total + col, s * sizeof(float));
    }
    col += s;
    outs.push_back(std::move(out));
  }
  return outs;
}

absl::StatusOr<Tensor> CpuBackend::Rotary(const Tensor& x, const RotaryParams& p,
                                          const StepBatch& batch) {
  KVCC_RETURN_IF_ERROR(CheckRotaryOperands(x, p, batch, Device::kCpu));
  const int64_t tokens = x.dim(0);
  KVCC_ASSIGN_OR_RETURN(auto out, Output({tokens, x.dim(1)}));
  std::memcpy(out.raw(), x.raw(), x.NumBytes());
  std::vector<float> fixed;
  if (!p.DependsOnLength()) fixed = RotaryInvFreq(p, 0);
  float* o = out.data<float>();
  const int64_t width = x.dim(1);
  pool_.ParallelFor(tokens, 8, [&](int64_t begin, int64_t end) {
    std::vector<float> dyn;
    int64_t dyn_len = -1;
    for (int64_t t = begin; t < end; ++t) {
      const float* inv = fixed.data();
      if (p.DependsOnLength()) {
        if (batch.seq_lens[t] != dyn_len) {
          dyn_len = batch.seq_lens[t];
          dyn = RotaryInvFreq(p, dyn_len);
        }
        inv = dyn.data();
      }
      for (int h = 0; h < p.heads; ++h) {
        ApplyRotary(inv, p.head_dim, batch.positions[t], o + t * width + int64_t{h} * p.head_dim);
      }
    }
  });
  return out;
}

absl::Status CpuBackend::KvCacheWrite(const Tensor& k, const Tensor& v, int layer,
                                      const StepBatch& batch, KvCache* cache) {
  const KvCacheLayout& l = cache->layout();
  if (auto s = CheckKvCacheWriteOperands(k, v, layer, batch.size(), l, Device::kCpu); !s.ok()) {
    return s;
  }
  const int64_t width = int64_t{l.kv_heads} * l.head_dim;
  if (cache->values(0, KvPart::kKey).device() != Device::kCpu) {
    return absl::InvalidArgumentError("kv_cache_write: the KV cache is not in host memory");
  }
  if (l.block_channel) {
    // A block_channel K quantizes a block when its last slot arrives: tokens in batch order.
    for (int64_t t = 0; t < batch.size(); ++t) {
      KVCC_RETURN_IF_ERROR(cache->WriteToken(layer, batch.sessions[t], batch.positions[t],
                                             k.data<float>() + t * width,
                                             v.data<float>() + t * width));
    }
    return absl::OkStatus();
  }
  std::mutex mu;
  absl::Status status;
  pool_.ParallelFor(batch.size(), 16, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      absl::Status s = cache->WriteToken(layer, batch.sessions[t], batch.positions[t],
                                         k.data<float>() + t * width, v.data<float>() + t * width);
      if (!s.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (status.ok()) status = s;
      }
    }
  });
  return status;
}

absl::StatusOr<Tensor> CpuBackend::Attention(const Tensor& q, const KvCache& cache,
                                             const AttentionParams& p, const StepBatch& batch) {
  const KvCacheLayout& l = cache.layout();
  KVCC_RETURN_IF_ERROR(CheckAttentionOperands(q, p, batch.size(), l, Device::kCpu));
  // Group the step's tokens by session: each (session, kv head) task dequantizes that
  // session's cached rows once and serves every query token and every q head of the group.
  std::map<int64_t, std::vector<int64_t>> by_session;
  for (int64_t t = 0; t < batch.size(); ++t) by_session[batch.sessions[t]].push_back(t);
  struct Group {
    int64_t session;
    const std::vector<int64_t>* tokens;
    const std::vector<int32_t>* table;
    int64_t max_pos;
  };
  std::vector<Group> groups;
  for (const auto& [session, tokens] : by_session) {
    KVCC_ASSIGN_OR_RETURN(auto table, cache.blocks().Table(session));
    int64_t max_pos = 0;
    for (int64_t t : tokens) max_pos = std::max<int64_t>(max_pos, batch.positions[t]);
    if (max_pos >= static_cast<int64_t>(table->size()) * l.block_size) {
      return absl::OutOfRangeError(absl::StrCat("attention: position ", max_pos, " of session ",
                                                session, " lies outside its cache blocks"));
    }
    groups.push_back({session, &tokens, table, max_pos});
  }
  KVCC_ASSIGN_OR_RETURN(auto out, Allocate(DType::kF32, {q.dim(0), q.dim(1)}));
  const int d = p.head_dim;
  const int group_heads = p.heads / p.kv_heads;
  const int64_t width = q.dim(1);
  const float* qs = q.data<float>();
  float* o = out.data<float>();
  const int64_t tasks = static_cast<int64_t>(groups.size()) * p.kv_heads;
  int64_t work = 0;
  for (const Group& g : groups) work += static_cast<int64_t>(g.tokens->size()) * (g.max_pos + 1);
  work *= int64_t{p.heads} * d;
  const int64_t min_chunk =
      std::max<int64_t>(1, kParallelWork / std::max<int64_t>(1, work / std::max<int64_t>(1, tasks)));
  pool_.ParallelFor(tasks, min_chunk, [&](int64_t tb, int64_t te) {
    thread_local std::vector<float> keys, values, scores;
    for (int64_t task = tb; task < te; ++task) {
      const Group& g = groups[task / p.kv_heads];
      const int kvh = static_cast<int>(task % p.kv_heads);
      const int64_t n = g.max_pos + 1;
      keys.resize(n * d);
      values.resize(n * d);
      scores.resize(n);
      for (int64_t j = 0; j < n; j += l.block_size) {
        const int32_t block = (*g.table)[j / l.block_size];
        const int count = static_cast<int>(std::min<int64_t>(l.block_size, n - j));
        cache.ReadRows(p.layer, KvPart::kKey, block, kvh, 0, count, keys.data() + j * d);
        cache.ReadRows(p.layer, KvPart::kValue, block, kvh, 0, count, values.data() + j * d);
      }
      for (int64_t t : *g.tokens) {
        const int64_t len = int64_t{batch.positions[t]} + 1;
        for (int hh = 0; hh < group_heads; ++hh) {
          const int h = kvh * group_heads + hh;
          const float* qh = qs + t * width + int64_t{h} * d;
          float m = -INFINITY;
          for (int64_t j = 0; j < len; ++j) {
            scores[j] = Dot(qh, keys.data() + j * d, d) * p.scale;
            m = std::max(m, scores[j]);
          }
          float sum = 0.0f;
          for (int64_t j = 0; j < len; ++j) {
            scores[j] = std::exp(scores[j] - m);
            sum += scores[j];
          }
          float* oh = o + t * width + int64_t{h} * d;
          const float inv = 1.0f / sum;
          for (int64_t j = 0; j < len; ++j) Axpy(scores[j] * inv, values.data() + j * d, oh, d);
        }
      }
    }
  });
  return out;
}

absl::StatusOr<Tensor> CpuBackend::SiluMul(const Tensor& gate, const Tensor& up) {
  if (auto s = CheckElementwiseOperands("silu_mul", gate, "silu_mul gate", up, "silu_mul up",
                                        Device::kCpu);
      !s.ok()) {
    return s;
  }
  KVCC_ASSIGN_OR_RETURN(auto out, Output(gate.shape()));
  const float* g = gate.data<float>();
  const float* u = up.data<float>();
  float* o = out.data<float>();
  pool_.ParallelFor(gate.NumElements(), 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  });
  return out;
}

absl::StatusOr<Tensor> CpuBackend::Add(const Tensor& a, const Tensor& b) {
  if (auto s = CheckElementwiseOperands("add", a, "add lhs", b, "add rhs", Device::kCpu);
      !s.ok()) {
    return s;
  }
  KVCC_ASSIGN_OR_RETURN(auto out, Output(a.shape()));
  const float* x = a.data<float>();
  const float* y = b.data<float>();
  float* o = out.data<float>();
  for (int64_t i = 0; i < a.NumElements(); ++i) o[i] = x[i] + y[i];
  return out;
}

absl::StatusOr<Tensor> CpuBackend::LmHead(const Tensor& x, const Tensor& weight) {
  return Linear(x, weight, nullptr);
}

absl::StatusOr<Tensor> CpuBackend::GatherRows(const Tensor& x, const std::vector<int64_t>& rows) {
  KVCC_RETURN_IF_ERROR(CheckActivation(x, Device::kCpu, "gather input"));
  KVCC_ASSIGN_OR_RETURN(auto out, Output({static_cast<int64_t>(rows.size()), x.dim(1)}));
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= x.dim(0)) {
      return absl::OutOfRangeError(absl::StrCat("gather: row ", rows[i], " outside ", x.ToString()));
    }
    std::memcpy(out.data<float>() + i * x.dim(1), x.data<float>() + rows[i] * x.dim(1),
                x.dim(1) * sizeof(float));
  }
  return out;
}

}  // namespace kvcc::runtime
