// Each CPU op against a naive double-precision reference on fresh random inputs (f32, f16 and
// bf16 weights), rotary scaling variants against transformers' formulas evaluated in double,
// and paged GQA attention over several sessions.
#include "runtime/backend_factory.h"
#include "runtime/cpu_backend.h"

#include <cmath>
#include <cstring>
#include <random>

#include "gtest/gtest.h"
#include "ir/half.h"
#include "tests/test_util.h"

namespace kvcc::runtime {
namespace {

using ir::DType;

class CpuBackendTest : public ::testing::Test {
 protected:
  Tensor Random(std::vector<int64_t> shape, float stddev = 1.0f) {
    Tensor t = Tensor::HostZeros(DType::kF32, std::move(shape));
    std::normal_distribution<float> n(0.0f, stddev);
    for (int64_t i = 0; i < t.NumElements(); ++i) t.data<float>()[i] = n(rng_);
    return t;
  }
  // A random weight stored as `dtype`, and its exact values as doubles.
  Tensor RandomWeight(DType dtype, std::vector<int64_t> shape, std::vector<double>* exact,
                      float stddev = 0.5f) {
    Tensor t = Tensor::HostZeros(dtype, shape);
    std::normal_distribution<float> n(0.0f, stddev);
    exact->resize(t.NumElements());
    for (int64_t i = 0; i < t.NumElements(); ++i) {
      const float f = n(rng_);
      if (dtype == DType::kF32) {
        t.data<float>()[i] = f;
        (*exact)[i] = f;
      } else if (dtype == DType::kF16) {
        t.data<uint16_t>()[i] = ir::FloatToHalf(f);
        (*exact)[i] = ir::HalfToFloat(t.data<uint16_t>()[i]);
      } else {
        t.data<uint16_t>()[i] = ir::FloatToBf16(f);
        (*exact)[i] = ir::Bf16ToFloat(t.data<uint16_t>()[i]);
      }
    }
    return t;
  }
  static double MaxRelError(const Tensor& got, const std::vector<double>& want) {
    EXPECT_EQ(got.NumElements(), static_cast<int64_t>(want.size()));
    double worst = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      worst = std::max(worst, std::fabs(got.data<float>()[i] - want[i]) /
                                  std::max(1.0, std::fabs(want[i])));
    }
    return worst;
  }
  std::mt19937 rng_{std::random_device{}()};
  CpuBackend cpu_{2};
};

TEST_F(CpuBackendTest, LinearMatchesDoubleForEveryWeightDtype) {
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (auto [tokens, in, out] : std::vector<std::tuple<int, int, int>>{
             {1, 64, 172}, {7, 172, 64}, {33, 37, 45}, {3, 256, 300}}) {
      Tensor x = Random({tokens, in});
      std::vector<double> w, b;
      Tensor wt = RandomWeight(dtype, {out, in}, &w);
      Tensor bt = RandomWeight(dtype, {out}, &b);
      for (bool bias : {false, true}) {
        KVCC_ASSERT_OK_AND_ASSIGN(y, cpu_.Linear(x, wt, bias ? &bt : nullptr));
        std::vector<double> want(static_cast<size_t>(tokens) * out);
        for (int t = 0; t < tokens; ++t) {
          for (int r = 0; r < out; ++r) {
            double s = bias ? b[r] : 0.0;
            for (int k = 0; k < in; ++k) s += double{x.data<float>()[t * in + k]} * w[r * in + k];
            want[t * out + r] = s;
          }
        }
        EXPECT_LE(MaxRelError(y, want), 2e-5) << ir::DTypeName(dtype) << " " << tokens << "x"
                                              << in << "->" << out;
      }
    }
  }
}

// The fused op returns exactly what Add then RmsNorm return (the pass relies on it), for every
// weight dtype, and the norm matches the double reference.
TEST_F(CpuBackendTest, AddRmsNormEqualsAddThenRmsNorm) {
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (auto [tokens, n] : std::vector<std::pair<int64_t, int64_t>>{{1, 8}, {5, 24}, {40, 67}}) {
      Tensor x = Random({tokens, n}, 3.0f), r = Random({tokens, n}, 2.0f);
      std::vector<double> w;
      Tensor wt = RandomWeight(dtype, {n}, &w);
      KVCC_ASSERT_OK_AND_ASSIGN(fused, cpu_.AddRmsNorm(x, r, wt, 1e-6f));
      ASSERT_EQ(fused.size(), 2u);
      KVCC_ASSERT_OK_AND_ASSIGN(sum, cpu_.Add(x, r));
      KVCC_ASSERT_OK_AND_ASSIGN(norm, cpu_.RmsNorm(sum, wt, 1e-6f));
      ASSERT_EQ(fused[0].shape(), sum.shape());
      ASSERT_EQ(fused[1].shape(), norm.shape());
      EXPECT_EQ(std::memcmp(fused[0].raw(), sum.raw(), sum.NumBytes()), 0);
      EXPECT_EQ(std::memcmp(fused[1].raw(), norm.raw(), norm.NumBytes()), 0)
          << ir::DTypeName(dtype) << " " << tokens << "x" << n;
      std::vector<double> want;
      for (int64_t t = 0; t < tokens; ++t) {
        double ss = 0;
        for (int64_t j = 0; j < n; ++j) ss += std::pow(double{sum.data<float>()[t * n + j]}, 2);
        const double inv = 1.0 / std::sqrt(ss / n + 1e-6);
        for (int64_t j = 0; j < n; ++j) want.push_back(w[j] * sum.data<float>()[t * n + j] * inv);
      }
      EXPECT_LE(MaxRelError(fused[1], want), 2e-6);
    }
  }
  Tensor x = Random({3, 8});
  std::vector<double> w;
  EXPECT_FALSE(cpu_.AddRmsNorm(x, Random({3, 9}), RandomWeight(DType::kF32, {8}, &w), 1e-5f).ok());
  EXPECT_FALSE(cpu_.AddRmsNorm(x, x, RandomWeight(DType::kF32, {7}, &w), 1e-5f).ok());
}

TEST_F(CpuBackendTest, LmHeadEmbeddingRmsNormSiluMulAddSplit) {
  std::vector<double> table;
  Tensor tt = RandomWeight(DType::kBF16, {50, 24}, &table);
  Tensor ids = Tensor::HostZeros(DType::kI32, {4});
  const int32_t id[4] = {3, 49, 0, 3};
  std::memcpy(ids.raw(), id, sizeof(id));
  KVCC_ASSERT_OK_AND_ASSIGN(e, cpu_.Embedding(ids, tt));
  std::vector<double> want_e;
  for (int t = 0; t < 4; ++t) {
    for (int j = 0; j < 24; ++j) want_e.push_back(table[id[t] * 24 + j]);
  }
  EXPECT_EQ(MaxRelError(e, want_e), 0.0);
  ids.data<int32_t>()[2] = 50;
  EXPECT_EQ(cpu_.Embedding(ids, tt).status().code(), absl::StatusCode::kOutOfRange);

  Tensor x = Random({5, 24}, 3.0f);
  std::vector<double> w;
  Tensor wt = RandomWeight(DType::kF16, {24}, &w);
  KVCC_ASSERT_OK_AND_ASSIGN(n, cpu_.RmsNorm(x, wt, 1e-5f));
  std::vector<double> want_n;
  for (int t = 0; t < 5; ++t) {
    double ss = 0;
    for (int j = 0; j < 24; ++j) ss += std::pow(double{x.data<float>()[t * 24 + j]}, 2);
    const double inv = 1.0 / std::sqrt(ss / 24 + 1e-5);
    for (int j = 0; j < 24; ++j) want_n.push_back(w[j] * x.data<float>()[t * 24 + j] * inv);
  }
  EXPECT_LE(MaxRelError(n, want_n), 2e-6);

  Tensor g = Random({5, 24}, 4.0f), u = Random({5, 24});
  KVCC_ASSERT_OK_AND_ASSIGN(s, cpu_.SiluMul(g, u));
  KVCC_ASSERT_OK_AND_ASSIGN(a, cpu_.Add(g, u));
  std::vector<double> want_s, want_a;
  for (int i = 0; i < 120; ++i) {
    const double gv = g.data<float>()[i], uv = u.data<float>()[i];
    want_s.push_back(gv / (1.0 + std::exp(-gv)) * uv);
    want_a.push_back(gv + uv);
  }
  EXPECT_LE(MaxRelError(s, want_s), 1e-6);
  EXPECT_LE(MaxRelError(a, want_a), 1e-7);
  EXPECT_FALSE(cpu_.Add(g, Random({5, 23})).ok());

  KVCC_ASSERT_OK_AND_ASSIGN(parts, cpu_.Split(g, {10, 4, 10}));
  ASSERT_EQ(parts.size(), 3u);
  for (int t = 0; t < 5; ++t) {
    EXPECT_EQ(parts[1].data<float>()[t * 4 + 2], g.data<float>()[t * 24 + 12]);
    EXPECT_EQ(parts[2].data<float>()[t * 10 + 9], g.data<float>()[t * 24 + 23]);
  }
  EXPECT_FALSE(cpu_.Split(g, {10, 10}).ok());

  std::vector<double> head;
  Tensor ht = RandomWeight(DType::kF32, {31, 24}, &head);
  KVCC_ASSERT_OK_AND_ASSIGN(logits, cpu_.LmHead(x, ht));
  std::vector<double> want_l;
  for (int t = 0; t < 5; ++t) {
    for (int v = 0; v < 31; ++v) {
      double acc = 0;
      for (int j = 0; j < 24; ++j) acc += double{x.data<float>()[t * 24 + j]} * head[v * 24 + j];
      want_l.push_back(acc);
    }
  }
  EXPECT_LE(MaxRelError(logits, want_l), 2e-6);
}

// transformers' inverse frequencies for each scaling, in double.
std::vector<double> HfInvFreq(const RotaryParams& p, int64_t seq_len) {
  const int d = p.head_dim;
  double base = p.theta;
  if (p.scaling == "dynamic" && seq_len > p.original_max_position) {
    base = p.theta * std::pow(p.factor * seq_len / p.original_max_position - (p.factor - 1),
                              static_cast<double>(d) / (d - 2));
  }
  std::vector<double> inv;
  for (int i = 0; i < d / 2; ++i) inv.push_back(1.0 / std::pow(base, 2.0 * i / d));
  if (p.scaling == "linear") {
    for (double& f : inv) f /= p.factor;
  }
  if (p.scaling == "llama3") {
    const double low_wl = p.original_max_position / p.low_freq_factor;
    const double high_wl = p.original_max_position / p.high_freq_factor;
    for (double& f : inv) {
      const double wl = 2 * M_PI / f;
      if (wl < high_wl) continue;
      if (wl > low_wl) {
        f /= p.factor;
        continue;
      }
      const double smooth = (p.original_max_position / wl - p.low_freq_factor) /
                            (p.high_freq_factor - p.low_freq_factor);
      f = (1 - smooth) * f / p.factor + smooth * f;
    }
  }
  return inv;
}

TEST_F(CpuBackendTest, RotaryScalingsFollowTransformersFormulas) {
  std::vector<RotaryParams> variants(5);
  for (RotaryParams& p : variants) {
    p.heads = 3;
    p.head_dim = 64;
    p.theta = 500000.0;
    p.original_max_position = 32;
  }
  variants[1].scaling = "linear";
  variants[1].factor = 4.0;
  variants[2].scaling = "dynamic";
  variants[2].factor = 2.0;
  variants[3].scaling = "llama3";
  variants[3].factor = 8.0;
  variants[3].low_freq_factor = 1.0;
  variants[3].high_freq_factor = 4.0;
  variants[3].original_max_position = 8192;
  variants[4] = variants[2];
  variants[4].head_dim = 8;
  variants[4].theta = 10000.0;
  for (const RotaryParams& p : variants) {
    // Two sessions: one inside the trained context, one beyond it (dynamic rescales there).
    StepBatch batch;
    for (int i = 0; i < 6; ++i) {
      batch.sessions.push_back(i < 3 ? 1 : 2);
      batch.positions.push_back(i < 3 ? 5 + i : 40 + 3 * i);
    }
    batch.ComputeSeqLens();
    Tensor x = Random({6, int64_t{p.heads} * p.head_dim});
    KVCC_ASSERT_OK_AND_ASSIGN(y, cpu_.Rotary(x, p, batch));
    std::vector<double> want;
    for (int t = 0; t < 6; ++t) {
      const std::vector<double> inv = HfInvFreq(p, batch.seq_lens[t]);
      const std::vector<float> ours = RotaryInvFreq(p, batch.seq_lens[t]);
      for (int i = 0; i < p.head_dim / 2; ++i) {
        EXPECT_NEAR(ours[i], inv[i], 1e-6 * inv[i]) << p.scaling << " i=" << i;
      }
      const int half = p.head_dim / 2;
      std::vector<double> row(p.heads * p.head_dim);
      for (int h = 0; h < p.heads; ++h) {
        const float* xh = x.data<float>() + t * x.dim(1) + h * p.head_dim;
        for (int j = 0; j < half; ++j) {
          const double ang = inv[j] * batch.positions[t];
          row[h * p.head_dim + j] = xh[j] * std::cos(ang) - xh[j + half] * std::sin(ang);
          row[h * p.head_dim + j + half] = xh[j + half] * std::cos(ang) + xh[j] * std::sin(ang);
        }
      }
      want.insert(want.end(), row.begin(), row.end());
    }
    // Float32 angles (as transformers computes them) at positions < 60 differ from double
    // by a few 1e-6 radians.
    EXPECT_LE(MaxRelError(y, want), 3e-5) << p.scaling;
  }
}

TEST_F(CpuBackendTest, RotaryParamsRejectBadAttributes) {
  ir::Node n;
  n.op = "rotary";
  n.name = "layers.2.q_rotary";
  n.attrs = {{"heads", int64_t{2}}, {"head_dim", int64_t{7}}, {"theta", 10000.0},
             {"scaling", std::string("none")}};
  auto p = RotaryParams::FromNode(n);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("layers.2.q_rotary"), std::string::npos);
  n.attrs["head_dim"] = int64_t{8};
  n.attrs["scaling"] = std::string("yarn");
  EXPECT_FALSE(RotaryParams::FromNode(n).ok());
  n.attrs["scaling"] = std::string("llama3");
  n.attrs["factor"] = 8.0;
  EXPECT_FALSE(RotaryParams::FromNode(n).ok());  // no original_max_position
}

TEST_F(CpuBackendTest, PagedGqaAttentionOverSeveralSessions) {
  const int heads = 6, kv_heads = 2, d = 16, block = 4;
  KvCacheSpec spec;
  spec.layout = {1, kv_heads, d, block, 16};
  const ir::KvCacheScheme scheme = ir::KvCacheScheme::Uniform({DType::kF32, ir::KvGranularity::kNone});
  spec.layout.SetStorage(scheme);
  spec.schemes = {scheme};
  KVCC_ASSERT_OK_AND_ASSIGN(cache, cpu_.CreateKvCache(spec));
  // Session 5 holds 11 tokens, session 9 holds 6; blocks interleave in the pool.
  std::map<int64_t, std::vector<std::vector<float>>> keys, values;
  for (int64_t s : {5, 9}) KVCC_ASSERT_OK(cache->blocks().AddSession(s));
  for (int pos = 0; pos < 11; ++pos) {
    for (int64_t s : {5, 9}) {
      if (s == 9 && pos >= 6) continue;
      KVCC_ASSERT_OK(cache->blocks().Reserve(s, pos + 1));
      Tensor k = Random({1, kv_heads * d}), v = Random({1, kv_heads * d});
      StepBatch b;
      b.sessions = {s};
      b.positions = {pos};
      b.ComputeSeqLens();
      KVCC_ASSERT_OK(cpu_.KvCacheWrite(k, v, 0, b, cache.get()));
      keys[s].emplace_back(k.data<float>(), k.data<float>() + kv_heads * d);
      values[s].emplace_back(v.data<float>(), v.data<float>() + kv_heads * d);
    }
  }
  StepBatch batch;
  batch.sessions = {9, 5, 5, 9, 5};
  batch.positions = {5, 10, 0, 2, 7};
  batch.ComputeSeqLens();
  Tensor q = Random({5, heads * d});
  AttentionParams p{0, heads, kv_heads, d, true, 0.25f};
  KVCC_ASSERT_OK_AND_ASSIGN(out, cpu_.Attention(q, *cache, p, batch));
  std::vector<double> want;
  for (int t = 0; t < 5; ++t) {
    const auto& ks = keys[batch.sessions[t]];
    const auto& vs = values[batch.sessions[t]];
    for (int h = 0; h < heads; ++h) {
      const int g = h / (heads / kv_heads);
      std::vector<double> sc;
      double m = -1e300;
      for (int j = 0; j <= batch.positions[t]; ++j) {
        double s = 0;
        for (int i = 0; i < d; ++i) s += double{q.data<float>()[t * heads * d + h * d + i]} * ks[j][g * d + i];
        sc.push_back(s * 0.25);
        m = std::max(m, sc.back());
      }
      double z = 0;
      for (double& s : sc) z += (s = std::exp(s - m));
      for (int i = 0; i < d; ++i) {
        double acc = 0;
        for (size_t j = 0; j < sc.size(); ++j) acc += sc[j] / z * vs[j][g * d + i];
        want.push_back(acc);
      }
    }
  }
  EXPECT_LE(MaxRelError(out, want), 1e-5);
  // A token beyond its session's blocks is refused.
  batch.positions[0] = 40;
  EXPECT_FALSE(cpu_.Attention(q, *cache, p, batch).ok());
}

TEST_F(CpuBackendTest, ShapeMismatchesAreErrors) {
  std::vector<double> w;
  Tensor wt = RandomWeight(DType::kF16, {8, 6}, &w);
  EXPECT_EQ(cpu_.Linear(Random({2, 5}), wt, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  Tensor i8 = Tensor::HostZeros(DType::kI8, {8, 6});
  EXPECT_EQ(cpu_.Linear(Random({2, 6}), i8, nullptr).status().code(),
            absl::StatusCode::kUnimplemented);
  RotaryParams p;
  p.heads = 2;
  p.head_dim = 4;
  StepBatch b;
  b.sessions = {1};
  b.positions = {0};
  b.ComputeSeqLens();
  EXPECT_FALSE(cpu_.Rotary(Random({2, 8}), p, b).ok());  // 2 tokens, 1 position
}

TEST(CreateBackendTest, NamesTheDevice) {
  KVCC_ASSERT_OK_AND_ASSIGN(cpu, CreateBackend("cpu", 1));
  EXPECT_EQ(cpu->name(), "cpu");
  auto tpu = CreateBackend("tpu");
  ASSERT_FALSE(tpu.ok());
  EXPECT_NE(tpu.status().message().find("unknown device 'tpu'"), std::string::npos) << tpu.status();
}

TEST(ThreadPoolTest, CoversEveryIndexExactlyOnce) {
  ThreadPool pool(3);
  for (int64_t n : {1, 7, 100, 10007}) {
    std::vector<std::atomic<int>> hits(n);
    pool.ParallelFor(n, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[i]++;
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << n << " " << i;
  }
}

}  // namespace
}  // namespace kvcc::runtime

namespace kvcc::runtime {
namespace {

// Backend::TargetNll, the oracle of the device reductions: log-sum-exp less the target's logit,
// 0 for a row without a target, and an error naming a target outside the vocabulary or a row
// count that does not match.
TEST(CpuTargetNllTest, IsTheLogSoftmaxOfTheTarget) {
  CpuBackend cpu(1);
  Tensor logits = Tensor::HostZeros(ir::DType::kF32, {2, 3});
  const float v[] = {1.0f, 2.0f, 3.0f, 0.0f, 0.0f, 0.0f};
  std::copy(v, v + 6, logits.data<float>());
  KVCC_ASSERT_OK_AND_ASSIGN(nll, cpu.TargetNll(logits, {0, -1}));
  ASSERT_EQ(nll.size(), 2u);
  EXPECT_NEAR(nll[0], std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 1.0, 1e-12);
  EXPECT_EQ(nll[1], 0.0);
  auto bad = cpu.TargetNll(logits, {3, 0});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("target 3 of row 0"), std::string::npos) << bad.status();
  EXPECT_FALSE(cpu.TargetNll(logits, {0}).ok());
}

}  // namespace
}  // namespace kvcc::runtime
