// KV-cache quantization: the seed's arithmetic on edge cases, the kv-quantize pass's rewrite of
// every kv_cache_write for each named scheme, its errors, and the flag entry point.
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <limits>
#include <random>
#include <string>
#include <tuple>

#include "frontend/model_loader.h"
#include "gtest/gtest.h"
#include "ir/kv_cache_scheme.h"
#include "ir/op_names.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "passes/kv_calibration_pass.h"
#include "passes/kv_params.h"
#include "pipeline/model_opener.h"
#include "passes/fuse.h"
#include "calibration/kv_calibrator.h"
#include "passes/pass_manager.h"
#include "passes/kv_quantize.h"
#include "runtime/backend_factory.h"
#include "runtime/backend.h"
#include "runtime/engine.h"
#include "ir/fp8_e4m3.h"
#include "ir/half.h"
#include "ir/kv_quant.h"
#include "tests/test_util.h"

namespace kvcc::passes {
namespace {

using ir::CalibratedParams;
using ir::Dequantize;
using ir::QuantizeCalibrated;

// ---- arithmetic ----

TEST(KvQuantArithmeticTest, ParamsFollowTheSeedFormula) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-50.0f, 50.0f);
  for (int i = 0; i < 1000; ++i) {
    float a = u(rng), b = u(rng);
    float mn = std::min(a, b), mx = std::max(a, b);
    if (mn == mx) continue;
    ir::ZpScale p8 = CalibratedParams(mn, mx, 255);
    EXPECT_EQ(p8.zp, (mn + mx) / 2.0f);
    EXPECT_EQ(p8.scale, (mx - mn) / 255.0f);
    ir::ZpScale p4 = CalibratedParams(mn, mx, 15);
    EXPECT_EQ(p4.scale, (mx - mn) / 15.0f);
  }
}

TEST(KvQuantArithmeticTest, ConstantTensorDequantizesExactly) {
  for (float c : {0.0f, 1.5f, -3.25f, 1e-20f, 6.0e4f}) {
    ir::ZpScale p = CalibratedParams(c, c, 255);
    ASSERT_GT(p.scale, 0.0f) << c;  // no division by zero
    EXPECT_TRUE(std::isfinite(p.scale));
    EXPECT_EQ(p.zp, c);
    const int q = QuantizeCalibrated(c, p.zp, p.scale, -128, 127);
    EXPECT_EQ(q, 0) << c;
    EXPECT_EQ(Dequantize(q, p.zp, p.scale), c);
  }
}

TEST(KvQuantArithmeticTest, RangeEndsAndBeyondHitTheClampLimits) {
  struct Case {
    float mn, mx;
    int levels, qmin, qmax;
  };
  for (const Case& c : {Case{-2.0f, 6.0f, 255, -128, 127}, Case{-0.5f, 0.25f, 255, -128, 127},
                        Case{-2.0f, 6.0f, 15, -8, 7}, Case{3.0f, 7.0f, 15, -8, 7}}) {
    ir::ZpScale p = CalibratedParams(c.mn, c.mx, c.levels);
    // (max - zp) / scale = levels / 2 = 127.5 (7.5): rounds to 128 (8), clamps to qmax.
    EXPECT_EQ(QuantizeCalibrated(c.mx, p.zp, p.scale, c.qmin, c.qmax), c.qmax);
    // (min - zp) / scale = -127.5 (-7.5) up to float rounding of the quotient: the range's
    // 255 (15) steps span 256 (16) levels, so min lands on qmin or qmin + 1 as the quotient
    // falls, never outside.
    const float at_min = std::nearbyint((c.mn - p.zp) / p.scale);
    const int q_min = QuantizeCalibrated(c.mn, p.zp, p.scale, c.qmin, c.qmax);
    EXPECT_EQ(q_min, static_cast<int>(std::max(at_min, float(c.qmin))));
    EXPECT_TRUE(q_min == c.qmin || q_min == c.qmin + 1) << q_min;
    EXPECT_EQ(QuantizeCalibrated(c.mx + 100.0f, p.zp, p.scale, c.qmin, c.qmax), c.qmax);
    EXPECT_EQ(QuantizeCalibrated(c.mn - 100.0f, p.zp, p.scale, c.qmin, c.qmax), c.qmin);
    EXPECT_EQ(QuantizeCalibrated(std::numeric_limits<float>::max(), p.zp, p.scale, c.qmin,
                                 c.qmax),
              c.qmax);
    EXPECT_EQ(QuantizeCalibrated(p.zp, p.zp, p.scale, c.qmin, c.qmax), 0);
    // Dequantized limits stay within half a step of the range.
    EXPECT_LE(std::fabs(Dequantize(c.qmax, p.zp, p.scale) - c.mx), p.scale * 0.5f + 1e-6f);
    EXPECT_LE(std::fabs(Dequantize(c.qmin, p.zp, p.scale) - c.mn), p.scale * 0.5f + 1e-6f);
  }
}

TEST(KvQuantArithmeticTest, RoundTripErrorIsAtMostHalfAStepInsideTheRange) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-3.0f, 9.0f);
  ir::ZpScale p = CalibratedParams(-3.0f, 9.0f, 255);
  for (int i = 0; i < 10000; ++i) {
    float f = u(rng);
    int q = QuantizeCalibrated(f, p.zp, p.scale, -128, 127);
    // Independent double-precision statement of the formula.
    double want = std::nearbyint((double(f) - p.zp) / p.scale);
    want = std::min(127.0, std::max(-128.0, want));
    EXPECT_NEAR(q, want, 1.0) << f;  // float vs double division may flip an exact .5 tie
    EXPECT_LE(std::fabs(Dequantize(q, p.zp, p.scale) - f), p.scale * 0.5f * 1.0001f) << f;
  }
}

// ---- the pass ----

// Statistics of random K/V for `config`; layer 2's head 1 of K is constant (max == min).
KvParams RandomParams(const ir::Module& m) {
  const ir::ModelConfig& c = m.config;
  KvStatsAccumulator acc(c.num_layers, c.num_kv_heads, c.head_dim);
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t width = c.num_kv_heads * c.head_dim, tokens = 9;
  for (int l = 0; l < c.num_layers; ++l) {
    std::vector<float> k(tokens * width), v(tokens * width);
    for (int64_t i = 0; i < tokens * width; ++i) {
      const int64_t head = (i % width) / c.head_dim;
      k[i] = (l == 2 && head == 1) ? 0.75f : normal(rng) * float(head + 1);
      v[i] = normal(rng) * 0.1f + float(l);
    }
    EXPECT_TRUE(acc.Observe(l, k.data(), v.data(), tokens, c.num_kv_heads, c.head_dim).ok());
  }
  KvParams p;
  p.model = IdentityOf(m);
  p.calibration = {"random", 1, 9, 0};
  p.layers = acc.layers();
  return p;
}

struct Calibrated {
  std::unique_ptr<ir::Module> module;
  KvParams params;
};

Calibrated StoriesCalibrated() {
  Calibrated c{testing::LoadStories260K(), {}};
  if (c.module == nullptr) return c;
  c.params = RandomParams(*c.module);
  KvCalibrationPass pass(c.params, "random.json");
  EXPECT_TRUE(pass.Run(*c.module).ok());
  return c;
}

std::vector<const ir::Node*> CacheWrites(const ir::Module& m) {
  std::vector<const ir::Node*> out;
  for (const auto& n : m.graph.nodes()) {
    if (n->op == ir::op::kKvCacheWrite) out.push_back(n.get());
  }
  return out;
}

TEST(KvQuantizePassTest, PerLayerInt8IsTheSeedScheme) {
  Calibrated c = StoriesCalibrated();
  ASSERT_NE(c.module, nullptr);
  KvQuantizePass pass(KvQuantScheme::kInt8PerLayer);
  KVCC_ASSERT_OK(pass.Run(*c.module));
  KVCC_ASSERT_OK(ir::Verify(*c.module));
  auto writes = CacheWrites(*c.module);
  ASSERT_EQ(writes.size(), size_t(c.module->config.num_layers));
  for (const ir::Node* n : writes) {
    const KvLayerStats& s = c.params.layers[*n->Int("layer")];
    KVCC_ASSERT_OK_AND_ASSIGN(scheme, ir::ReadKvCacheScheme(*n));
    EXPECT_EQ(scheme.dtype, ir::DType::kI8);
    EXPECT_EQ(scheme.granularity, ir::KvGranularity::kPerLayer);
    EXPECT_EQ(n->output()->type.dtype, ir::DType::kI8);
    ASSERT_EQ(scheme.k_zp.size(), 1u);
    EXPECT_EQ(scheme.k_zp[0], (s.k.layer.min + s.k.layer.max) / 2.0f);
    EXPECT_EQ(scheme.k_scale[0], (s.k.layer.max - s.k.layer.min) / 255.0f);
    EXPECT_EQ(scheme.v_zp[0], (s.v.layer.min + s.v.layer.max) / 2.0f);
    EXPECT_EQ(scheme.v_scale[0], (s.v.layer.max - s.v.layer.min) / 255.0f);
  }
  EXPECT_EQ(c.module->metadata["kv_quant"], "int8-per-layer");
  // The attention reads the quantized cache.
  for (const auto& n : c.module->graph.nodes()) {
    if (n->op == ir::op::kAttention) {
      EXPECT_EQ(n->input(1)->type.dtype, ir::DType::kI8);
    }
  }
}

TEST(KvQuantizePassTest, PerHeadSchemesUseEachHeadsRange) {
  for (KvQuantScheme which : {KvQuantScheme::kInt8PerHead, KvQuantScheme::kInt4PerHead}) {
    Calibrated c = StoriesCalibrated();
    ASSERT_NE(c.module, nullptr);
    KVCC_ASSERT_OK(KvQuantizePass(which).Run(*c.module));
    KVCC_ASSERT_OK(ir::Verify(*c.module));
    const bool int4 = which == KvQuantScheme::kInt4PerHead;
    const float levels = int4 ? 15.0f : 255.0f;
    // int8-per-head's grid spans the head's range widened by its headroom on each side.
    const float room = int4 ? 0.0f : passes::kInt8HeadHeadroom;
    for (const ir::Node* n : CacheWrites(*c.module)) {
      const KvLayerStats& s = c.params.layers[*n->Int("layer")];
      KVCC_ASSERT_OK_AND_ASSIGN(scheme, ir::ReadKvCacheScheme(*n));
      EXPECT_EQ(scheme.dtype, int4 ? ir::DType::kI4 : ir::DType::kI8);
      EXPECT_EQ(n->output()->type.dtype, scheme.dtype);
      EXPECT_EQ(scheme.granularity, ir::KvGranularity::kPerHead);
      ASSERT_EQ(scheme.k_zp.size(), s.k.heads.size());
      for (size_t h = 0; h < s.k.heads.size(); ++h) {
        for (auto [r, zp, scale] : {std::tuple{s.k.heads[h], scheme.k_zp[h], scheme.k_scale[h]},
                                    std::tuple{s.v.heads[h], scheme.v_zp[h], scheme.v_scale[h]}}) {
          const float lo = r.min - (r.max - r.min) * room, hi = r.max + (r.max - r.min) * room;
          EXPECT_EQ(zp, (lo + hi) / 2.0f);
          if (r.min == r.max) {
            EXPECT_GT(scale, 0.0f);  // the constant head
          } else {
            EXPECT_EQ(scale, (hi - lo) / levels);
          }
        }
      }
    }
  }
}

TEST(KvQuantizePassTest, OnlineSchemesNeedNoCalibration) {
  for (KvQuantScheme which : {KvQuantScheme::kInt8Online, KvQuantScheme::kInt4Online}) {
    auto m = testing::LoadStories260K();
    ASSERT_NE(m, nullptr);
    KVCC_ASSERT_OK(KvQuantizePass(which).Run(*m));
    KVCC_ASSERT_OK(ir::Verify(*m));
    for (const ir::Node* n : CacheWrites(*m)) {
      KVCC_ASSERT_OK_AND_ASSIGN(scheme, ir::ReadKvCacheScheme(*n));
      EXPECT_EQ(scheme.granularity, ir::KvGranularity::kOnline);
      EXPECT_EQ(scheme.dtype,
                which == KvQuantScheme::kInt4Online ? ir::DType::kI4 : ir::DType::kI8);
      EXPECT_FALSE(n->Has("k_zp"));
    }
  }
}

TEST(KvQuantizePassTest, OnePartLeavesTheOtherInFp16) {
  for (ir::KvPart part : {ir::KvPart::kKey, ir::KvPart::kValue}) {
    Calibrated c = StoriesCalibrated();
    ASSERT_NE(c.module, nullptr);
    KVCC_ASSERT_OK(KvQuantizePass(KvQuantScheme::kInt8PerHead, part).Run(*c.module));
    KVCC_ASSERT_OK(ir::Verify(*c.module));
    const ir::KvPart other = part == ir::KvPart::kKey ? ir::KvPart::kValue : ir::KvPart::kKey;
    for (const ir::Node* n : CacheWrites(*c.module)) {
      const KvLayerStats& s = c.params.layers[*n->Int("layer")];
      KVCC_ASSERT_OK_AND_ASSIGN(scheme, ir::ReadKvCacheScheme(*n));
      EXPECT_EQ(scheme.Part(part), (ir::KvStorage{ir::DType::kI8, ir::KvGranularity::kPerHead}));
      EXPECT_EQ(scheme.Part(other), ir::KvStorage{});
      EXPECT_TRUE(scheme.Zps(other).empty());
      // The quantized part keeps exactly the full scheme's parameters.
      const KvTensorStats& ranges = part == ir::KvPart::kKey ? s.k : s.v;
      ASSERT_EQ(scheme.Zps(part).size(), ranges.heads.size());
      const float room = (ranges.heads[0].max - ranges.heads[0].min) * passes::kInt8HeadHeadroom;
      EXPECT_EQ(scheme.Zps(part)[0], ((ranges.heads[0].min - room) +
                                      (ranges.heads[0].max + room)) / 2.0f);
      EXPECT_EQ(n->output()->type.dtype,
                part == ir::KvPart::kKey ? ir::DType::kI8 : ir::DType::kF16);
    }
    EXPECT_EQ(c.module->metadata["kv_quant"],
              part == ir::KvPart::kKey ? "int8-per-head (K only)" : "int8-per-head (V only)");
  }
}

TEST(KvQuantizePassTest, QuantPartFlagIsCheckedBeforeUse) {
  EXPECT_FALSE(ParseKvQuantPart("", KvQuantScheme::kNone)->has_value());
  EXPECT_EQ(ParseKvQuantPart("v", KvQuantScheme::kFp8KChannel)->value(), ir::KvPart::kValue);
  for (auto [part, scheme, says] :
       {std::tuple{"kv", KvQuantScheme::kInt8Online, "expected k or v"},
        std::tuple{"K", KvQuantScheme::kInt8Online, "expected k or v"},
        std::tuple{"k", KvQuantScheme::kNone, "needs a quantized scheme"}}) {
    auto r = ParseKvQuantPart(part, scheme);
    ASSERT_FALSE(r.ok()) << part;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(says), std::string::npos) << r.status();
  }
}

TEST(KvQuantizePassTest, CalibratedSchemeWithoutCalibrationSaysToCalibrate) {
  for (KvQuantScheme which : {KvQuantScheme::kInt8PerLayer, KvQuantScheme::kInt8PerHead,
                              KvQuantScheme::kInt4PerHead}) {
    auto m = testing::LoadStories260K();
    ASSERT_NE(m, nullptr);
    const std::string before = ir::Print(*m);
    absl::Status s = KvQuantizePass(which).Run(*m);
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(s.message().find("run `kvcc calibrate"), std::string::npos) << s;
    EXPECT_EQ(ir::Print(*m), before);
  }
}

TEST(KvQuantizePassTest, QuantizingTwiceIsAnError) {
  auto m = testing::LoadStories260K();
  ASSERT_NE(m, nullptr);
  KVCC_ASSERT_OK(KvQuantizePass(KvQuantScheme::kInt8Online).Run(*m));
  absl::Status s = KvQuantizePass(KvQuantScheme::kInt4Online).Run(*m);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("already has a quantized cache"), std::string::npos) << s;
}

// ---- the pipeline's KV-cache lowering (pipeline/model_opener.h), without the fusions ----

absl::StatusOr<KvQuantScheme> ApplyKvQuantFromFlags(ir::Module& m, const std::string& dir,
                                                    int policy, const std::string& kv_quant,
                                                    const std::string& kv_params,
                                                    std::ostream* dump = nullptr,
                                                    const std::string& dump_after = "") {
  pipeline::LowerOptions lower;
  lower.quant_policy = policy;
  lower.kv_quant = kv_quant;
  lower.kv_params = kv_params;
  lower.fusions = false;
  lower.dump = dump;
  lower.dump_after = dump_after;
  return pipeline::LowerForExecution(m, dir, lower);
}

TEST(KvQuantFlagsTest, ResolvesPolicyAndNames) {
  EXPECT_EQ(*ResolveKvQuantScheme(0, ""), KvQuantScheme::kNone);
  EXPECT_EQ(*ResolveKvQuantScheme(4, ""), KvQuantScheme::kInt8PerLayer);
  EXPECT_EQ(*ResolveKvQuantScheme(4, "int8-per-layer"), KvQuantScheme::kInt8PerLayer);
  for (KvQuantScheme s : AllKvQuantSchemes()) {
    EXPECT_EQ(*ResolveKvQuantScheme(0, std::string(KvQuantSchemeName(s))), s);
  }
  EXPECT_FALSE(ResolveKvQuantScheme(8, "").ok());
  EXPECT_FALSE(ResolveKvQuantScheme(4, "int4-online").ok());
  absl::Status bad = ResolveKvQuantScheme(0, "int3").status();
  EXPECT_NE(bad.message().find("int8-per-head"), std::string::npos) << bad;
}

TEST(KvQuantFlagsTest, PolicyFourReadsTheModelDirsParameterFile) {
  auto m = testing::LoadStories260K();
  ASSERT_NE(m, nullptr);
  const std::string dir = testing::TempDir("kv_quant_flags");
  // No file yet: the error says what to run.
  auto missing = ApplyKvQuantFromFlags(*m, dir, 4, "", "");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("kvcc calibrate " + dir), std::string::npos)
      << missing.status();
  const KvParams p = RandomParams(*m);
  KVCC_ASSERT_OK(WriteKvParams(p, KvParamsPath(dir)));
  std::ostringstream dump;
  KVCC_ASSERT_OK_AND_ASSIGN(applied, ApplyKvQuantFromFlags(*m, dir, 4, "", "", &dump,
                                                           "kv-quantize"));
  EXPECT_EQ(applied, KvQuantScheme::kInt8PerLayer);
  EXPECT_EQ(dump.str(), ir::Print(*m));
  const ir::Node* first = CacheWrites(*m)[0];
  EXPECT_EQ(ir::ReadKvCacheScheme(*first)->k_zp[0],
            (p.layers[0].k.layer.min + p.layers[0].k.layer.max) / 2.0f);
}

TEST(KvQuantFlagsTest, ExplicitParameterFileAndMismatch) {
  auto m = testing::LoadStories260K();
  ASSERT_NE(m, nullptr);
  const std::string dir = testing::TempDir("kv_quant_flags_explicit");
  ir::Module other;
  other.config = m->config;
  other.config.num_layers += 1;
  KVCC_ASSERT_OK(WriteKvParams(RandomParams(other), dir + "/other.json"));
  auto r = ApplyKvQuantFromFlags(*m, "/nonexistent", 0, "int8-per-head", dir + "/other.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("different model"), std::string::npos) << r.status();
  KVCC_ASSERT_OK(WriteKvParams(RandomParams(*m), dir + "/mine.json"));
  KVCC_ASSERT_OK_AND_ASSIGN(applied,
                            ApplyKvQuantFromFlags(*m, "/nonexistent", 0, "int4-per-head",
                                                  dir + "/mine.json"));
  EXPECT_EQ(applied, KvQuantScheme::kInt4PerHead);
  EXPECT_EQ(m->metadata["kv_quant"], "int4-per-head");
}

TEST(KvQuantFlagsTest, Fp16AndOnlineTouchNoFile) {
  auto m = testing::LoadStories260K();
  ASSERT_NE(m, nullptr);
  const std::string before = ir::Print(*m);
  KVCC_ASSERT_OK_AND_ASSIGN(none, ApplyKvQuantFromFlags(*m, "/nonexistent", 0, "", ""));
  EXPECT_EQ(none, KvQuantScheme::kNone);
  EXPECT_EQ(ir::Print(*m), before);
  KVCC_ASSERT_OK_AND_ASSIGN(online,
                            ApplyKvQuantFromFlags(*m, "/nonexistent", 0, "int8-online", ""));
  EXPECT_EQ(online, KvQuantScheme::kInt8Online);
}

// ---- the CPU backend's quantized cache against an fp32 emulation of the formula ----

// Pseudo-random text in the model's vocabulary (bit-exactness does not depend on the text).
// The stored code of one value, straight from the formulas (ir/kv_cache_scheme.h), in fp32.
// The e4m3 code nearest to x by exhaustive search over the finite codes (ties to the even
// code, beyond 448 the largest): an oracle independent of ir/fp8_e4m3.h's bit arithmetic.
uint8_t NearestFp8(float x) {
  const double a = std::fabs(double(x));
  int best = 0;
  double best_d = 1e300;
  for (int code = 0; code < 0x7f; ++code) {
    const int e = code >> 3, m = code & 7;
    const double v = e == 0 ? m / 8.0 * std::ldexp(1.0, -6) : (1 + m / 8.0) * std::ldexp(1.0, e - 7);
    const double d = std::fabs(v - a);
    if (d < best_d || (d == best_d && code % 2 == 0)) {
      best = code;
      best_d = d;
    }
  }
  return static_cast<uint8_t>(best | (std::signbit(x) ? 0x80 : 0));
}

// The stored code of one value, straight from the formulas (ir/kv_cache_scheme.h), in fp32.
uint8_t EmulatedCode(const ir::KvCacheScheme& s, ir::KvPart part, int head, int channel,
                     int head_dim, float f, float online_zero, float online_scale) {
  const ir::KvStorage st = s.Part(part);
  if (st.dtype == ir::DType::kFP8E4M3) {
    return NearestFp8((f - s.Zp(part, head, channel, head_dim)) /
                      s.Scale(part, head, channel, head_dim));
  }
  const int bits = st.dtype == ir::DType::kI8 ? 8 : 4;
  float q;
  if (st.online()) {
    q = std::nearbyint((f - online_zero) / online_scale);
    q = std::min(std::max(q, 0.0f), float((1 << bits) - 1));
  } else {
    const float zp = s.Zp(part, head, channel, head_dim);
    const float scale = s.Scale(part, head, channel, head_dim);
    q = std::nearbyint((f - zp) / scale);
    q = std::min(std::max(q, -float(1 << (bits - 1))), float((1 << (bits - 1)) - 1));
  }
  return static_cast<uint8_t>(static_cast<int>(q) & (bits == 8 ? 0xff : 0xf));
}

// Runs `windows` through stories260K quantized with `scheme` (calibrated on `calib` first when
// the scheme needs it) and checks every byte of the cache the engine wrote against the
// emulation of the K/V it was handed.
void ExpectCacheBytesMatchEmulation(KvQuantScheme scheme) {
  auto loaded = frontend::LoadModel(testing::SourcePath("models/stories260K"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  std::shared_ptr<ir::Module> module = std::move(*loaded);
  const ir::ModelConfig& c = module->config;
  if (NeedsCalibration(scheme)) {
    KVCC_ASSERT_OK_AND_ASSIGN(
        params, calibration::CalibrateKv(module, testing::RandomTokenWindows(3, 96, c.vocab_size, 1),
                            {"random-ids", 3, 96, 1}));
    KVCC_ASSERT_OK(
        KvCalibrationPass(params, "calibrated", NeedsChannelRanges(scheme)).Run(*module));
  }
  KVCC_ASSERT_OK(KvQuantizePass(scheme).Run(*module));
  KVCC_ASSERT_OK(ir::Verify(*module));

  KVCC_ASSERT_OK_AND_ASSIGN(backend, runtime::CreateBackend("cpu", 1));
  runtime::EngineOptions options;
  options.block_size = 16;
  options.max_context = 128;
  KVCC_ASSERT_OK_AND_ASSIGN(engine, runtime::Engine::Create(module, std::move(backend), options));
  const int layers = c.num_layers, heads = c.num_kv_heads, dim = c.head_dim;
  // What each layer was asked to store, token by token ([layer][token][kv_heads*head_dim]).
  std::vector<std::vector<float>> k_seen(layers), v_seen(layers);
  engine->executor().SetKvObserver([&](int layer, const float* k, const float* v,
                                       int64_t tokens, int, int) {
    k_seen[layer].insert(k_seen[layer].end(), k, k + tokens * heads * dim);
    v_seen[layer].insert(v_seen[layer].end(), v, v + tokens * heads * dim);
  });
  KVCC_ASSERT_OK_AND_ASSIGN(session, engine->CreateSession());
  const auto prompt = testing::RandomTokenWindows(1, 40, c.vocab_size, 9)[0];
  KVCC_ASSERT_OK(engine->Prefill(session, prompt).status());
  for (int32_t t : {5, 77, 300}) {  // decode steps write one token each
    KVCC_ASSERT_OK(engine->Decode({{session, t}}).status());
  }
  const int64_t tokens = engine->SessionLength(session);
  ASSERT_EQ(tokens, 43);
  runtime::KvCache& cache = engine->cache();
  KVCC_ASSERT_OK_AND_ASSIGN(table, cache.blocks().Table(session));
  const runtime::KvCacheLayout& layout = cache.layout();
  int64_t checked = 0;
  for (int l = 0; l < layers; ++l) {
    const ir::KvCacheScheme& s = cache.scheme(l);
    // The engine's cache took the pass's scheme.
    ASSERT_TRUE(s.quantized()) << "layer " << l;
    ASSERT_EQ(k_seen[l].size(), size_t(tokens * heads * dim));
    for (runtime::KvPart part : {runtime::KvPart::kKey, runtime::KvPart::kValue}) {
      const bool key = part == runtime::KvPart::kKey;
      const std::vector<float>& seen = key ? k_seen[l] : v_seen[l];
      const uint8_t* values = static_cast<const uint8_t*>(cache.values(l, part).raw());
      const uint16_t* params = static_cast<const uint16_t*>(cache.params(l, part).raw());
      for (int64_t t = 0; t < tokens; ++t) {
        const int32_t block = (*table)[t / layout.block_size];
        const int slot = static_cast<int>(t % layout.block_size);
        for (int h = 0; h < heads; ++h) {
          const float* f = &seen[(t * heads + h) * dim];
          float zero = 0, scale = 1;
          const ir::KvStorage st = s.Part(part);
          if (st.online()) {
            // Online params: (max-min)/(2^bits-1) and min, stored as fp16.
            float lo = *std::min_element(f, f + dim), hi = *std::max_element(f, f + dim);
            const int bits = st.dtype == ir::DType::kI8 ? 8 : 4;
            ir::OnlineHalfParams hp = ir::OnlineParams(lo, hi, bits);
            const int64_t at = ((int64_t(block) * heads + h) * layout.block_size + slot) * 2;
            ASSERT_EQ(params[at], hp.scale);
            ASSERT_EQ(params[at + 1], hp.zero);
            scale = ir::HalfToFloat(hp.scale);
            zero = ir::HalfToFloat(hp.zero);
          }
          const uint8_t* row = values + layout.RowOffset(part, block, h, slot);
          for (int j = 0; j < dim; ++j) {
            const uint8_t want = EmulatedCode(s, part, h, j, dim, f[j], zero, scale);
            const uint8_t got = st.dtype != ir::DType::kI4
                                    ? row[j]
                                    : static_cast<uint8_t>((j % 2 == 0 ? row[j / 2]
                                                                        : row[j / 2] >> 4) &
                                                           0xf);
            ASSERT_EQ(got, want) << "layer " << l << (key ? " K" : " V") << " token " << t
                                 << " head " << h << " channel " << j << " value " << f[j];
            ++checked;
          }
        }
      }
    }
  }
  EXPECT_EQ(checked, 2 * layers * tokens * heads * dim);
}

TEST(KvCacheBitExactTest, Int8PerLayer) { ExpectCacheBytesMatchEmulation(KvQuantScheme::kInt8PerLayer); }
TEST(KvCacheBitExactTest, Int8PerHead) { ExpectCacheBytesMatchEmulation(KvQuantScheme::kInt8PerHead); }
TEST(KvCacheBitExactTest, Int4PerHead) { ExpectCacheBytesMatchEmulation(KvQuantScheme::kInt4PerHead); }
TEST(KvCacheBitExactTest, Int4PerHeadClip) { ExpectCacheBytesMatchEmulation(KvQuantScheme::kInt4PerHeadClip); }

TEST(KvQuantSchemeTest, PerHeadClipSpansItsFractionOfTheRangeAboutTheMidpoint) {
  KvLayerRanges r;
  r.k_min = {-1.0f, 2.0f};
  r.k_max = {3.0f, 12.0f};
  r.v_min = {-4.0f, 0.0f};
  r.v_max = {4.0f, 1.0f};
  KVCC_ASSERT_OK_AND_ASSIGN(full, MakeLayerScheme(KvQuantScheme::kInt4PerHead, &r, 2, 8));
  KVCC_ASSERT_OK_AND_ASSIGN(clip, MakeLayerScheme(KvQuantScheme::kInt4PerHeadClip, &r, 2, 8));
  for (int h = 0; h < 2; ++h) {
    EXPECT_FLOAT_EQ(clip.k_zp[h], full.k_zp[h]);
    EXPECT_FLOAT_EQ(clip.k_scale[h], full.k_scale[h] * passes::kInt4HeadClip);
    EXPECT_FLOAT_EQ(clip.v_scale[h], full.v_scale[h] * passes::kInt4HeadClip);
  }
}
TEST(KvCacheBitExactTest, Int8Online) { ExpectCacheBytesMatchEmulation(KvQuantScheme::kInt8Online); }
TEST(KvCacheBitExactTest, Int4Online) { ExpectCacheBytesMatchEmulation(KvQuantScheme::kInt4Online); }
TEST(KvCacheBitExactTest, K8V4) { ExpectCacheBytesMatchEmulation(KvQuantScheme::kK8V4); }
TEST(KvCacheBitExactTest, K8V4Online) { ExpectCacheBytesMatchEmulation(KvQuantScheme::kK8V4Online); }
TEST(KvCacheBitExactTest, Fp8PerTensor) { ExpectCacheBytesMatchEmulation(KvQuantScheme::kFp8PerTensor); }
TEST(KvCacheBitExactTest, Fp8PerHead) { ExpectCacheBytesMatchEmulation(KvQuantScheme::kFp8PerHead); }
TEST(KvCacheBitExactTest, Int4KChannel) { ExpectCacheBytesMatchEmulation(KvQuantScheme::kInt4KChannel); }
TEST(KvCacheBitExactTest, Fp8KChannel) { ExpectCacheBytesMatchEmulation(KvQuantScheme::kFp8KChannel); }

// fp8-per-head takes the per-tensor scale divided by a power of two per head: each head's values
// stay finite, and no value is stored with more error than on the per-tensor grid (the codes are
// the same, whole binades apart; small values leave the subnormals).
TEST(KvQuantSchemeTest, Fp8PerHeadNeverCostsMoreThanPerTensor) {
  KvLayerRanges r;
  r.k_min = {-20.0f, -0.3f, -2.5f, -5.0f};
  r.k_max = {7.0f, 0.2f, 5.0f, 1.0f};
  r.v_min = {-1.0f, -1.0f, -0.01f, -3.0f};
  r.v_max = {1.0f, 1.0f, 0.02f, 2.9f};
  KVCC_ASSERT_OK_AND_ASSIGN(tensor, MakeLayerScheme(KvQuantScheme::kFp8PerTensor, &r, 4, 8));
  KVCC_ASSERT_OK_AND_ASSIGN(head, MakeLayerScheme(KvQuantScheme::kFp8PerHead, &r, 4, 8));
  std::mt19937 rng(3);
  for (ir::KvPart part : {ir::KvPart::kKey, ir::KvPart::kValue}) {
    const auto& mins = part == ir::KvPart::kKey ? r.k_min : r.v_min;
    const auto& maxs = part == ir::KvPart::kKey ? r.k_max : r.v_max;
    const float whole = tensor.Scales(part)[0];
    for (int h = 0; h < 4; ++h) {
      const float s = head.Scales(part)[h];
      EXPECT_EQ(head.Zps(part)[h], 0.0f);
      int exp = 0;
      EXPECT_EQ(std::frexp(whole / s, &exp), 0.5f) << "not a power of two: " << whole / s;
      const float absmax = std::max(-mins[h], maxs[h]);
      EXPECT_LE(absmax / s, 448.0f * (1 + 1e-6f)) << h;
      EXPECT_GT(absmax / s, 224.0f) << "a larger power of two would still fit, head " << h;
      std::uniform_real_distribution<float> val(mins[h], maxs[h]);
      for (int i = 0; i < 2000; ++i) {
        const float x = i == 0 ? 1e-4f * maxs[h] : val(rng);
        const float on_head = ir::Fp8E4M3ToFloat(ir::FloatToFp8E4M3(x / s)) * s;
        const float on_tensor = ir::Fp8E4M3ToFloat(ir::FloatToFp8E4M3(x / whole)) * whole;
        EXPECT_LE(std::fabs(on_head - x), std::fabs(on_tensor - x)) << "head " << h << " x " << x;
      }
    }
  }
}

// fp8-kchannel centres each K channel's e4m3 grid on its calibrated midpoint with kFp8ChannelRoom
// half-widths of room; V stays fp8 per head (zp 0, absmax / 448).
TEST(KvQuantSchemeTest, Fp8KChannelCentresEachKChannel) {
  KvLayerRanges r;
  r.k_min = {2.0f, -3.0f};
  r.k_max = {10.0f, 1.0f};
  r.v_min = {-4.0f, 0.0f};
  r.v_max = {4.0f, 2.0f};
  r.k_ch_min = {2.0f, 5.0f, -3.0f, -1.0f};
  r.k_ch_max = {4.0f, 10.0f, 1.0f, -0.5f};
  r.v_ch_min = {-4.0f, -1.0f, 0.0f, 0.5f};
  r.v_ch_max = {4.0f, 1.0f, 2.0f, 1.0f};
  EXPECT_TRUE(NeedsChannelRanges(KvQuantScheme::kFp8KChannel));
  KVCC_ASSERT_OK_AND_ASSIGN(s, MakeLayerScheme(KvQuantScheme::kFp8KChannel, &r, 2, 2));
  EXPECT_EQ(ir::KvCacheSchemeName(s), "fp8e4m3/per_channel+fp8e4m3/per_head");
  ASSERT_EQ(s.k_zp.size(), 4u);
  for (int c = 0; c < 4; ++c) {
    EXPECT_FLOAT_EQ(s.k_zp[c], (r.k_ch_min[c] + r.k_ch_max[c]) / 2.0f) << c;
    EXPECT_FLOAT_EQ(s.k_scale[c],
                    kFp8ChannelRoom * (r.k_ch_max[c] - r.k_ch_min[c]) / 2.0f / 448.0f) << c;
  }
  EXPECT_EQ(s.v_zp, (std::vector<float>{0.0f, 0.0f}));
  EXPECT_FLOAT_EQ(s.v_scale[0], 4.0f / 448.0f);
  EXPECT_FLOAT_EQ(s.v_scale[1], 2.0f / 448.0f);
  // An off-centre channel (5..10) is stored with less error than on the per-head grid about 0.
  KVCC_ASSERT_OK_AND_ASSIGN(head, MakeLayerScheme(KvQuantScheme::kFp8PerHead, &r, 2, 2));
  double err_channel = 0, err_head = 0;
  for (int i = 0; i <= 100; ++i) {
    const float x = 5.0f + 5.0f * i / 100.0f;
    const float centred = ir::Fp8E4M3ToFloat(ir::FloatToFp8E4M3((x - s.k_zp[1]) / s.k_scale[1])) *
                              s.k_scale[1] + s.k_zp[1];
    const float plain = ir::Fp8E4M3ToFloat(ir::FloatToFp8E4M3(x / head.k_scale[0])) * head.k_scale[0];
    err_channel += (centred - x) * (centred - x);
    err_head += (plain - x) * (plain - x);
  }
  EXPECT_LT(err_channel, 0.25 * err_head);
  // Within the calibrated range the room changes no rounding: the codes are those of room 1
  // shifted by whole binades (a factor of 4 = 2 binades of e4m3).
  for (int i = 0; i <= 100; ++i) {
    const float d = -2.5f + 5.0f * i / 100.0f;  // channel 1's offsets from its midpoint
    const float wide = ir::Fp8E4M3ToFloat(ir::FloatToFp8E4M3(d / s.k_scale[1])) * s.k_scale[1];
    const float tight_scale = 2.5f / 448.0f;
    const float tight = ir::Fp8E4M3ToFloat(ir::FloatToFp8E4M3(d / tight_scale)) * tight_scale;
    EXPECT_FLOAT_EQ(wide, tight) << d;
  }
}

// ---- the pipeline's IR after kv-quantize, against golden text ----

// Golden files live in tests/data/golden; KVCC_UPDATE_GOLDEN=1 rewrites them (review the diff).
// The calibration input is a checked-in parameter file (calibrated on PTB valid by `kvcc
// calibrate`), so the dump depends only on the importer and the passes, not on runtime
// arithmetic.
void ExpectPipelineDumpMatchesGolden(KvQuantScheme scheme, const std::string& golden_name) {
  auto loaded = frontend::LoadModel(testing::SourcePath("models/stories260K"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ir::Module& m = **loaded;
  const std::string params_path =
      testing::SourcePath("tests/data/golden/stories260K.kv_params.json");
  KVCC_ASSERT_OK_AND_ASSIGN(params, ReadKvParams(params_path));
  PassManager pm;
  // As the pipeline: calibration parameters are matched against the weights as loaded, before
  // fusion makes new ones.
  pm.Add(std::make_unique<KvCalibrationPass>(params, "stories260K.kv_params.json"));
  pm.Add(std::make_unique<FusePass>());
  pm.Add(std::make_unique<KvQuantizePass>(scheme));
  std::ostringstream dump;
  pm.DumpAfter("kv-quantize", &dump);
  KVCC_ASSERT_OK(pm.Run(m));
  // The importer records the checkpoint's path; the checkout's location is not part of the IR.
  std::string text = dump.str();
  const std::string root = testing::SourcePath("");
  for (size_t at; (at = text.find(root)) != std::string::npos;) {
    text.replace(at, root.size(), "$KVCC_SOURCE_DIR/");
  }
  const std::string golden_path = testing::SourcePath("tests/data/golden/" + golden_name);
  if (const char* update = std::getenv("KVCC_UPDATE_GOLDEN"); update && std::string(update) == "1") {
    std::ofstream(golden_path, std::ios::binary) << text;
  }
  std::ifstream in(golden_path, std::ios::binary);
  ASSERT_TRUE(in.good()) << golden_path << " is missing (KVCC_UPDATE_GOLDEN=1 writes it)";
  std::stringstream golden;
  golden << in.rdbuf();
  if (golden.str() == text) return;
  // Point at the first differing line rather than printing two whole dumps.
  std::istringstream a(golden.str()), b(text);
  std::string la, lb;
  for (int line = 1;; ++line) {
    const bool more_a = static_cast<bool>(std::getline(a, la));
    const bool more_b = static_cast<bool>(std::getline(b, lb));
    if (!more_a && !more_b) break;
    if (la != lb || more_a != more_b) {
      ADD_FAILURE() << golden_path << " differs at line " << line << ":\n  golden: " << la
                    << "\n  actual: " << lb;
      return;
    }
  }
}

TEST(KvQuantizeGoldenTest, Int8PerLayerDumpIsStable) {
  ExpectPipelineDumpMatchesGolden(KvQuantScheme::kInt8PerLayer, "stories260K.int8-per-layer.ir");
}

TEST(KvQuantizeGoldenTest, Int4PerHeadDumpIsStable) {
  ExpectPipelineDumpMatchesGolden(KvQuantScheme::kInt4PerHead, "stories260K.int4-per-head.ir");
}

// Split K/V storage and per-channel lists survive the attribute round trip; malformed
// combinations are errors naming the node.
TEST(KvCacheSchemeAttrTest, SplitStorageAndPerChannelRoundTrip) {
  ir::Node node;
  node.name = "kvw";
  node.op = ir::op::kKvCacheWrite;
  node.attrs["kv_heads"] = int64_t{2};
  node.attrs["head_dim"] = int64_t{4};
  ir::KvCacheScheme s;
  s.SetPart(ir::KvPart::kKey, {ir::DType::kI4, ir::KvGranularity::kPerChannel});
  s.SetPart(ir::KvPart::kValue, {ir::DType::kI4, ir::KvGranularity::kOnline});
  s.k_zp = {0, 1, 2, 3, 4, 5, 6, 7};
  s.k_scale = {1, 1, 1, 1, 2, 2, 2, 2};
  ir::WriteKvCacheScheme(s, &node);
  KVCC_ASSERT_OK_AND_ASSIGN(back, ir::ReadKvCacheScheme(node));
  EXPECT_EQ(back.Part(ir::KvPart::kKey), s.Part(ir::KvPart::kKey));
  EXPECT_EQ(back.Part(ir::KvPart::kValue), s.Part(ir::KvPart::kValue));
  EXPECT_EQ(back.k_zp, s.k_zp);
  EXPECT_TRUE(back.v_zp.empty());
  EXPECT_EQ(back.Zp(ir::KvPart::kKey, 1, 2, 4), 6.0f);
  EXPECT_EQ(back.Scale(ir::KvPart::kKey, 1, 2, 4), 2.0f);
  EXPECT_EQ(ir::KvCacheSchemeName(back), "i4/per_channel+i4/online");

  node.attrs["k_zp"] = std::vector<double>{0, 1};  // 2 entries, per_channel needs 8
  EXPECT_FALSE(ir::ReadKvCacheScheme(node).ok());
  ir::WriteKvCacheScheme(s, &node);
  node.attrs["v_cache_dtype"] = std::string("fp8e4m3");  // fp8 cannot be online
  absl::Status bad = ir::ReadKvCacheScheme(node).status();
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("kvw"), std::string::npos) << bad;
}

// A per-channel fp8 part carries each channel's midpoint as its zp; per-layer and per-head fp8
// parts keep zp 0 (their kernels assume it), and a non-zero one is refused.
TEST(KvCacheSchemeAttrTest, Fp8ZeroPointsOnlyPerChannel) {
  ir::Node node;
  node.name = "kvw8";
  node.op = ir::op::kKvCacheWrite;
  node.attrs["kv_heads"] = int64_t{2};
  node.attrs["head_dim"] = int64_t{2};
  ir::KvCacheScheme s;
  s.SetPart(ir::KvPart::kKey, {ir::DType::kFP8E4M3, ir::KvGranularity::kPerChannel});
  s.SetPart(ir::KvPart::kValue, {ir::DType::kFP8E4M3, ir::KvGranularity::kPerHead});
  s.k_zp = {0.5f, -2.0f, 3.0f, 0.0f};
  s.k_scale = {0.01f, 0.02f, 0.03f, 0.04f};
  s.v_zp = {0.0f, 0.0f};
  s.v_scale = {0.1f, 0.2f};
  ir::WriteKvCacheScheme(s, &node);
  KVCC_ASSERT_OK_AND_ASSIGN(back, ir::ReadKvCacheScheme(node));
  EXPECT_EQ(back.k_zp, s.k_zp);
  node.attrs["v_zp"] = std::vector<double>{0.0, 1.0};
  absl::Status bad = ir::ReadKvCacheScheme(node).status();
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("v_zp"), std::string::npos) << bad;
  EXPECT_NE(bad.message().find("zp 0"), std::string::npos) << bad;
}

}  // namespace
}  // namespace kvcc::passes
