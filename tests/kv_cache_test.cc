// The paged KV cache: block allocation on demand, exhaustion without side effects, free and
// reuse, isolation between sessions, the layout's byte placement, and every storage scheme
// (f16, i8/i4 per_layer and per_head, online i8/i4) equal bit for bit to a float emulation of
// the formulas in ir/kv_cache_scheme.h.
#include "ir/op_names.h"
#include "runtime/kv_cache.h"

#include <cmath>
#include <cstring>
#include <random>

#include "gtest/gtest.h"
#include "ir/builder.h"
#include "ir/half.h"
#include "tests/test_util.h"

namespace kvcc::runtime {
namespace {

using ir::DType;
using ir::KvGranularity;

KvCacheSpec Spec(DType dtype, KvGranularity g, int layers, int kv_heads, int head_dim,
                 int block_size, int64_t blocks) {
  KvCacheSpec spec;
  spec.layout.num_layers = layers;
  spec.layout.kv_heads = kv_heads;
  spec.layout.head_dim = head_dim;
  spec.layout.block_size = block_size;
  spec.layout.num_blocks = blocks;
  spec.layout.SetStorage(ir::KvCacheScheme::Uniform({dtype, g}));
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> zp(-0.5f, 0.5f), scale(0.01f, 0.05f);
  for (int l = 0; l < layers; ++l) {
    ir::KvCacheScheme s = ir::KvCacheScheme::Uniform({dtype, g});
    const int n = g == KvGranularity::kPerHead ? kv_heads : g == KvGranularity::kPerLayer ? 1 : 0;
    for (int i = 0; i < n; ++i) {
      s.k_zp.push_back(zp(rng));
      s.k_scale.push_back(scale(rng));
      s.v_zp.push_back(zp(rng));
      s.v_scale.push_back(scale(rng));
    }
    spec.schemes.push_back(s);
  }
  return spec;
}

std::unique_ptr<KvCache> Make(const KvCacheSpec& spec) {
  auto c = KvCache::CreateHost(spec);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : nullptr;
}

TEST(BlockPoolTest, AllocatesOnDemandAndFreesOnClose) {
  BlockPool pool(8, 4);
  KVCC_ASSERT_OK(pool.AddSession(1));
  EXPECT_EQ(pool.Capacity(1), 0);
  KVCC_ASSERT_OK(pool.Reserve(1, 1));
  EXPECT_EQ(pool.Capacity(1), 4);
  KVCC_ASSERT_OK(pool.Reserve(1, 4));
  EXPECT_EQ(pool.free_blocks(), 7);
  KVCC_ASSERT_OK(pool.Reserve(1, 9));
  EXPECT_EQ(pool.Capacity(1), 12);
  EXPECT_EQ(pool.free_blocks(), 5);
  KVCC_ASSERT_OK(pool.Reserve(1, 2));  // never shrinks
  EXPECT_EQ(pool.Capacity(1), 12);
  KVCC_ASSERT_OK(pool.RemoveSession(1));
  EXPECT_EQ(pool.free_blocks(), 8);
  EXPECT_FALSE(pool.Table(1).ok());
  EXPECT_EQ(pool.RemoveSession(1).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(pool.AddSession(2).code(), absl::StatusCode::kOk);
  EXPECT_EQ(pool.AddSession(2).code(), absl::StatusCode::kAlreadyExists);
}

TEST(BlockPoolTest, ExhaustionIsAllOrNothing) {
  BlockPool pool(4, 2);
  KVCC_ASSERT_OK(pool.AddSession(1));
  KVCC_ASSERT_OK(pool.AddSession(2));
  KVCC_ASSERT_OK(pool.Reserve(1, 4));
  const std::vector<int32_t> before = **pool.Table(1);
  // Session 2 needs 2 blocks, session 1 one more: 3 > 2 free, so nobody gets anything.
  absl::Status s = pool.Reserve({{2, 4}, {1, 6}});
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("exhausted"), std::string::npos) << s;
  EXPECT_EQ(**pool.Table(1), before);
  EXPECT_TRUE((*pool.Table(2))->empty());
  EXPECT_EQ(pool.free_blocks(), 2);
  KVCC_ASSERT_OK(pool.Reserve(2, 4));
  EXPECT_EQ(pool.free_blocks(), 0);
  EXPECT_EQ(pool.Reserve(2, 5).code(), absl::StatusCode::kResourceExhausted);
}

TEST(BlockPoolTest, FreedBlocksAreReusedAndTablesStayDisjoint) {
  BlockPool pool(6, 2);
  KVCC_ASSERT_OK(pool.AddSession(1));
  KVCC_ASSERT_OK(pool.AddSession(2));
  KVCC_ASSERT_OK(pool.Reserve(1, 6));
  KVCC_ASSERT_OK(pool.Reserve(2, 6));
  std::vector<int32_t> freed = **pool.Table(1);
  KVCC_ASSERT_OK(pool.RemoveSession(1));
  KVCC_ASSERT_OK(pool.AddSession(3));
  KVCC_ASSERT_OK(pool.Reserve(3, 6));
  std::vector<int32_t> got = **pool.Table(3);
  std::sort(freed.begin(), freed.end());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, freed);
  for (int32_t b : **pool.Table(2)) {
    EXPECT_EQ(std::count(got.begin(), got.end(), b), 0);
  }
}

TEST(KvCacheTest, LayoutMatchesTheSharedContract) {
  for (auto [dtype, g] : std::vector<std::pair<DType, KvGranularity>>{
           {DType::kF16, KvGranularity::kNone},
           {DType::kI8, KvGranularity::kPerHead},
           {DType::kI4, KvGranularity::kOnline}}) {
    KvCacheSpec spec = Spec(dtype, g, 3, 2, 8, 4, 5);
    auto cache = Make(spec);
    ASSERT_NE(cache, nullptr);
    const KvCacheLayout& l = cache->layout();
    int64_t total = 0;
    for (int layer = 0; layer < 3; ++layer) {
      for (KvPart p : {KvPart::kKey, KvPart::kValue}) {
        EXPECT_EQ(cache->values(layer, p).NumBytes(), l.num_blocks * l.BlockBytes(p));
        total += cache->values(layer, p).NumBytes() + cache->params(layer, p).NumBytes();
      }
    }
    EXPECT_EQ(total, l.TotalBytes());
  }
}

TEST(KvCacheTest, TokensLandInTheirSessionsBlocksAndSlots) {
  KvCacheSpec spec = Spec(DType::kF16, KvGranularity::kNone, 2, 2, 4, 4, 6);
  auto cache = Make(spec);
  ASSERT_NE(cache, nullptr);
  KVCC_ASSERT_OK(cache->blocks().AddSession(1));
  KVCC_ASSERT_OK(cache->blocks().AddSession(2));
  KVCC_ASSERT_OK(cache->blocks().Reserve({{1, 9}, {2, 5}}));
  // Every (session, layer, position, head) gets a distinct value.
  auto value = [](int s, int layer, int pos, int h, int j, bool v) {
    return static_cast<float>(s * 1000 + layer * 100 + pos * 4 + h * 0.5 + j * 0.125 + (v ? 0.0625 : 0));
  };
  for (int s : {1, 2}) {
    for (int layer = 0; layer < 2; ++layer) {
      for (int pos = 0; pos < (s == 1 ? 9 : 5); ++pos) {
        float k[8], v[8];
        for (int h = 0; h < 2; ++h) {
          for (int j = 0; j < 4; ++j) {
            k[h * 4 + j] = value(s, layer, pos, h, j, false);
            v[h * 4 + j] = value(s, layer, pos, h, j, true);
          }
        }
        KVCC_ASSERT_OK(cache->WriteToken(layer, s, pos, k, v));
      }
    }
  }
  const KvCacheLayout& l = cache->layout();
  for (int s : {1, 2}) {
    const std::vector<int32_t>& table = **cache->blocks().Table(s);
    for (int layer = 0; layer < 2; ++layer) {
      for (int pos = 0; pos < (s == 1 ? 9 : 5); ++pos) {
        for (int h = 0; h < 2; ++h) {
          // Raw bytes at the layout's offset hold the fp16 of the written value.
          const uint16_t* raw = reinterpret_cast<const uint16_t*>(
              cache->values(layer, KvPart::kValue).data<uint8_t>() +
              l.RowOffset(KvPart::kValue, table[pos / 4], h, pos % 4));
          for (int j = 0; j < 4; ++j) {
            EXPECT_EQ(raw[j], ir::FloatToHalf(value(s, layer, pos, h, j, true)));
          }
          float k[4];
          cache->ReadRow(layer, KvPart::kKey, table[pos / 4], h, pos % 4, k);
          for (int j = 0; j < 4; ++j) EXPECT_EQ(k[j], ir::RoundToHalf(value(s, layer, pos, h, j, false)));
        }
      }
    }
  }
  // Writing outside a session's reserved blocks fails and leaves the other session intact.
  float zeros[8] = {};
  EXPECT_EQ(cache->WriteToken(0, 2, 8, zeros, zeros).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(cache->WriteToken(0, 3, 0, zeros, zeros).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(cache->WriteToken(5, 1, 0, zeros, zeros).code(), absl::StatusCode::kOutOfRange);
}

// The formulas of ir/kv_cache_scheme.h in plain float arithmetic, written independently of
// the codec: the value a cache read must return.
float EmulateCalibrated(float f, float zp, float scale, int bits) {
  const float qmin = -std::ldexp(1.0f, bits - 1), qmax = std::ldexp(1.0f, bits - 1) - 1;
  float q = std::nearbyint((f - zp) / scale);
  q = std::fmin(std::fmax(q, qmin), qmax);
  return q * scale + zp;
}

TEST(KvCacheTest, CalibratedSchemesEqualTheFormulaBitForBit) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (DType dtype : {DType::kI8, DType::kI4}) {
    for (KvGranularity g : {KvGranularity::kPerLayer, KvGranularity::kPerHead}) {
      const int bits = dtype == DType::kI8 ? 8 : 4;
      KvCacheSpec spec = Spec(dtype, g, 2, 3, 6, 4, 4);
      auto cache = Make(spec);
      ASSERT_NE(cache, nullptr);
      KVCC_ASSERT_OK(cache->blocks().AddSession(9));
      KVCC_ASSERT_OK(cache->blocks().Reserve(9, 10));
      const std::vector<int32_t>& table = **cache->blocks().Table(9);
      for (int pos = 0; pos < 10; ++pos) {
        for (int layer = 0; layer < 2; ++layer) {
          // Values spread well past the representable range so clamping is exercised.
          std::vector<float> k(18), v(18);
          for (float& x : k) x = normal(rng) * (bits == 8 ? 3.0f : 0.3f);
          for (float& x : v) x = normal(rng) * (bits == 8 ? 3.0f : 0.3f);
          KVCC_ASSERT_OK(cache->WriteToken(layer, 9, pos, k.data(), v.data()));
          const ir::KvCacheScheme& s = spec.schemes[layer];
          for (int h = 0; h < 3; ++h) {
            float kr[6], vr[6];
            cache->ReadRow(layer, KvPart::kKey, table[pos / 4], h, pos % 4, kr);
            cache->ReadRow(layer, KvPart::kValue, table[pos / 4], h, pos % 4, vr);
            for (int j = 0; j < 6; ++j) {
              const float ek = EmulateCalibrated(k[h * 6 + j], s.KZp(h), s.KScale(h), bits);
              const float ev = EmulateCalibrated(v[h * 6 + j], s.VZp(h), s.VScale(h), bits);
              ASSERT_EQ(std::memcmp(&kr[j], &ek, 4), 0) << kr[j] << " vs " << ek;
              ASSERT_EQ(std::memcmp(&vr[j], &ev, 4), 0) << vr[j] << " vs " << ev;
            }
          }
        }
      }
    }
  }
}

TEST(KvCacheTest, Int4PacksElementPairsLowNibbleFirst) {
  KvCacheSpec spec = Spec(DType::kI4, KvGranularity::kPerLayer, 1, 1, 4, 2, 1);
  spec.schemes[0].k_zp = {0.0f};
  spec.schemes[0].k_scale = {1.0f};
  auto cache = Make(spec);
  ASSERT_NE(cache, nullptr);
  KVCC_ASSERT_OK(cache->blocks().AddSession(1));
  KVCC_ASSERT_OK(cache->blocks().Reserve(1, 1));
  const float k[4] = {3.0f, -2.0f, 100.0f, -100.0f};  // q = 3, -2, 7 (clamped), -8 (clamped)
  const float v[4] = {};
  KVCC_ASSERT_OK(cache->WriteToken(0, 1, 0, k, v));
  const int32_t block = (**cache->blocks().Table(1))[0];
  const uint8_t* row = cache->values(0, KvPart::kKey).data<uint8_t>() +
                       cache->layout().RowOffset(KvPart::kKey, block, 0, 0);
  EXPECT_EQ(row[0], 0xE3);  // -2 -> 0xE high, 3 low
  EXPECT_EQ(row[1], 0x87);  // -8 -> 0x8 high, 7 low
}

TEST(KvCacheTest, OnlineSchemesEqualTheFormulaBitForBit) {
  std::mt19937 rng(12);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (DType dtype : {DType::kI8, DType::kI4}) {
    const int bits = dtype == DType::kI8 ? 8 : 4;
    KvCacheSpec spec = Spec(dtype, KvGranularity::kOnline, 1, 2, 8, 4, 3);
    auto cache = Make(spec);
    ASSERT_NE(cache, nullptr);
    KVCC_ASSERT_OK(cache->blocks().AddSession(4));
    KVCC_ASSERT_OK(cache->blocks().Reserve(4, 12));
    const std::vector<int32_t>& table = **cache->blocks().Table(4);
    for (int pos = 0; pos < 12; ++pos) {
      std::vector<float> k(16), v(16);
      for (float& x : k) x = normal(rng);
      for (float& x : v) x = normal(rng);
      if (pos == 5) std::fill(k.begin(), k.begin() + 8, 1.25f);  // a constant head
      KVCC_ASSERT_OK(cache->WriteToken(0, 4, pos, k.data(), v.data()));
      for (int part = 0; part < 2; ++part) {
        const std::vector<float>& src = part == 0 ? k : v;
        const KvPart p = part == 0 ? KvPart::kKey : KvPart::kValue;
        for (int h = 0; h < 2; ++h) {
          const float* x = src.data() + h * 8;
          float lo = x[0], hi = x[0];
          for (int j = 1; j < 8; ++j) {
            lo = std::fmin(lo, x[j]);
            hi = std::fmax(hi, x[j]);
          }
          // Stored parameters: fp16 of (max-min)/(2^bits-1) and of min.
          float scale = ir::RoundToHalf((hi - lo) / static_cast<float>((1 << bits) - 1));
          if (scale == 0.0f) scale = std::ldexp(1.0f, -24);
          const float zero = ir::RoundToHalf(lo);
          const uint16_t* params = cache->params(0, p).data<uint16_t>() +
                                   ((table[pos / 4] * 2 + h) * 4 + pos % 4) * 2;
          EXPECT_EQ(ir::HalfToFloat(params[0]), scale);
          EXPECT_EQ(ir::HalfToFloat(params[1]), zero);
          float got[8];
          cache->ReadRow(0, p, table[pos / 4], h, pos % 4, got);
          for (int j = 0; j < 8; ++j) {
            float q = std::nearbyint((x[j] - zero) / scale);
            q = std::fmin(std::fmax(q, 0.0f), static_cast<float>((1 << bits) - 1));
            const float want = q * scale + zero;
            ASSERT_EQ(std::memcmp(&got[j], &want, 4), 0) << got[j] << " vs " << want;
            // Quantization error stays within one step (plus the fp16 rounding of the zero).
            EXPECT_LE(std::fabs(got[j] - x[j]), scale + std::fabs(zero - lo) + 1e-6f);
          }
        }
      }
    }
  }
}

TEST(KvCacheTest, SpecFromModuleReadsSchemesAndRejectsMixedLayouts) {
  ir::Module m;
  ir::Graph& g = m.graph;
  ir::Builder b(&g);
  ir::Value* x = *g.AddInput("x", {DType::kF32, {ir::kDynamic, 8}});
  auto write = [&](int layer, const std::string& dtype, const std::string& scheme) {
    ir::AttributeMap a = {{"layer", int64_t{layer}}, {"kv_heads", int64_t{2}},
                          {"head_dim", int64_t{4}}, {"cache_dtype", dtype},
                          {"kv_scheme", scheme}};
    if (scheme == "per_layer") {
      for (const char* key : {"k_zp", "v_zp"}) a[key] = std::vector<double>{0.0};
      for (const char* key : {"k_scale", "v_scale"}) a[key] = std::vector<double>{0.1};
    }
    return b.Add1(ir::op::kKvCacheWrite, "w" + std::to_string(layer), {x, x}, a);
  };
  ASSERT_TRUE(write(0, "i8", "per_layer").ok());
  ASSERT_TRUE(write(1, "i8", "online").ok());
  auto spec = KvCacheSpecFromModule(m, 16, 4);
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().message().find("w1"), std::string::npos) << spec.status();

  ir::Module m2;
  ir::Builder b2(&m2.graph);
  ir::Value* y = *m2.graph.AddInput("x", {DType::kF32, {ir::kDynamic, 8}});
  for (int layer : {1, 0}) {
    ir::AttributeMap a = {{"layer", int64_t{layer}}, {"kv_heads", int64_t{2}},
                          {"head_dim", int64_t{4}}};
    ASSERT_TRUE(b2.Add1(ir::op::kKvCacheWrite, "w" + std::to_string(layer), {y, y}, a).ok());
  }
  KVCC_ASSERT_OK_AND_ASSIGN(ok, KvCacheSpecFromModule(m2, 16, 4));
  EXPECT_EQ(ok.layout.num_layers, 2);
  EXPECT_EQ(ok.layout.dtype, DType::kF16);
  KVCC_ASSERT_OK_AND_ASSIGN(full, KvCacheSpecFromModule(m2, 16, 4, /*full_precision=*/true));
  EXPECT_EQ(full.layout.dtype, DType::kF32);
  EXPECT_EQ(full.schemes[1].dtype, DType::kF32);
}

TEST(KvCacheTest, RejectsInvalidLayouts) {
  KvCacheSpec spec = Spec(DType::kF16, KvGranularity::kNone, 1, 2, 4, 0, 4);
  EXPECT_EQ(KvCache::CreateHost(spec).status().code(), absl::StatusCode::kInvalidArgument);
  spec = Spec(DType::kI8, KvGranularity::kPerHead, 1, 2, 4, 4, 4);
  spec.schemes[0].k_zp.pop_back();
  EXPECT_EQ(KvCache::CreateHost(spec).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvcc::runtime
