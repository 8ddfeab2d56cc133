// Calibration: the K/V statistics accumulator (against a brute-force reference, NaN/Inf
// rejected naming the layer), reproducible calibration windows, and dataset resolution.
#include <sys/stat.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "calibration/calibration_data.h"
#include "calibration/kv_calibrator.h"
#include "passes/kv_quantize.h"
#include "runtime/backend_factory.h"
#include "runtime/backend.h"
#include "runtime/engine.h"
#include "passes/kv_stats.h"
#include "runtime/cpu_backend.h"
#include "tests/test_util.h"

namespace kvcc::calibration {
namespace {

constexpr int kLayers = 2, kHeads = 3, kDim = 4, kWidth = kHeads * kDim;

std::vector<float> Random(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.5f, 2.0f);
  std::vector<float> out(n);
  for (auto& x : out) x = normal(rng);
  return out;
}

TEST(KvStatsTest, MatchesBruteForceAcrossObservations) {
  passes::KvStatsAccumulator acc(kLayers, kHeads, kDim);
  std::mt19937 rng(1);
  std::vector<std::vector<float>> all_k(kLayers), all_v(kLayers);
  for (int step = 0; step < 4; ++step) {
    for (int l = 0; l < kLayers; ++l) {
      const int64_t tokens = 1 + step * 3;
      auto k = Random(tokens * kWidth, rng), v = Random(tokens * kWidth, rng);
      KVCC_ASSERT_OK(acc.Observe(l, k.data(), v.data(), tokens, kHeads, kDim));
      all_k[l].insert(all_k[l].end(), k.begin(), k.end());
      all_v[l].insert(all_v[l].end(), v.begin(), v.end());
    }
  }
  KVCC_ASSERT_OK(acc.CheckComplete());
  for (int l = 0; l < kLayers; ++l) {
    const passes::KvLayerStats& s = acc.layers()[l];
    EXPECT_EQ(s.tokens, int64_t(all_k[l].size() / kWidth));
    for (auto [data, t] : {std::pair{&all_k[l], &s.k}, std::pair{&all_v[l], &s.v}}) {
      float lmin = INFINITY, lmax = -INFINITY;
      std::vector<float> hmin(kHeads, INFINITY), hmax(kHeads, -INFINITY), habs(kHeads, 0);
      for (int c = 0; c < kWidth; ++c) {
        float cmin = INFINITY, cmax = -INFINITY, cabs = 0;
        for (size_t i = c; i < data->size(); i += kWidth) {
          float x = (*data)[i];
          cmin = std::min(cmin, x);
          cmax = std::max(cmax, x);
          cabs = std::max(cabs, std::fabs(x));
        }
        EXPECT_EQ(t->channels[c].min, cmin);
        EXPECT_EQ(t->channels[c].max, cmax);
        EXPECT_EQ(t->channels[c].absmax, cabs);
        const int h = c / kDim;
        hmin[h] = std::min(hmin[h], cmin);
        hmax[h] = std::max(hmax[h], cmax);
        habs[h] = std::max(habs[h], cabs);
        lmin = std::min(lmin, cmin);
        lmax = std::max(lmax, cmax);
      }
      for (int h = 0; h < kHeads; ++h) {
        EXPECT_EQ(t->heads[h].min, hmin[h]);
        EXPECT_EQ(t->heads[h].max, hmax[h]);
        EXPECT_EQ(t->heads[h].absmax, habs[h]);
      }
      EXPECT_EQ(t->layer.min, lmin);
      EXPECT_EQ(t->layer.max, lmax);
      EXPECT_EQ(t->layer.absmax, std::max(std::fabs(lmin), std::fabs(lmax)));
    }
  }
}

TEST(KvStatsTest, RejectsNonFiniteDataNamingTheLayer) {
  std::mt19937 rng(2);
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    passes::KvStatsAccumulator acc(kLayers, kHeads, kDim);
    auto k = Random(2 * kWidth, rng), v = Random(2 * kWidth, rng);
    KVCC_ASSERT_OK(acc.Observe(1, k.data(), v.data(), 2, kHeads, kDim));
    const passes::KvLayerStats before = acc.layers()[1];
    v[kWidth + 2 * kDim + 1] = bad;  // token 1, head 2, channel 1
    absl::Status s = acc.Observe(1, k.data(), v.data(), 2, kHeads, kDim);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("layer 1 V"), std::string::npos) << s;
    EXPECT_NE(s.message().find("token 1, kv head 2, channel 1"), std::string::npos) << s;
    EXPECT_TRUE(acc.layers()[1] == before);  // the bad observation left no trace
    k[0] = bad;
    s = acc.Observe(0, k.data(), v.data(), 2, kHeads, kDim);
    EXPECT_NE(s.message().find("layer 0 K"), std::string::npos) << s;
  }
}

TEST(KvStatsTest, RejectsShapeMismatchAndIncompleteRuns) {
  passes::KvStatsAccumulator acc(kLayers, kHeads, kDim);
  std::vector<float> k(kWidth, 1.0f), v(kWidth, 2.0f);
  EXPECT_FALSE(acc.Observe(2, k.data(), v.data(), 1, kHeads, kDim).ok());
  EXPECT_FALSE(acc.Observe(-1, k.data(), v.data(), 1, kHeads, kDim).ok());
  EXPECT_FALSE(acc.Observe(0, k.data(), v.data(), 1, kHeads + 1, kDim).ok());
  KVCC_ASSERT_OK(acc.Observe(0, k.data(), v.data(), 1, kHeads, kDim));
  absl::Status s = acc.CheckComplete();
  EXPECT_NE(s.message().find("layer 1"), std::string::npos) << s;
  // A constant tensor is a valid observation: min == max.
  EXPECT_EQ(acc.layers()[0].k.layer.min, 1.0f);
  EXPECT_EQ(acc.layers()[0].k.layer.max, 1.0f);
}

// The range path (Backend::ColumnRanges reduced, then ObserveChannels) gives exactly the
// statistics of the row path (Observe), and names the channel of a non-finite value.
TEST(KvStatsTest, ChannelRangesEqualTheRowObservations) {
  runtime::CpuBackend cpu(1);
  std::mt19937 rng(3);
  passes::KvStatsAccumulator rows(kLayers, kHeads, kDim), ranges(kLayers, kHeads, kDim);
  auto reduce = [&](const std::vector<float>& data, int64_t tokens) {
    runtime::Tensor t = runtime::Tensor::HostZeros(ir::DType::kF32, {tokens, kWidth});
    std::copy(data.begin(), data.end(), t.data<float>());
    auto c = cpu.ColumnRanges(t);
    EXPECT_TRUE(c.ok()) << c.status();
    std::vector<passes::RangeStat> r(kWidth);
    for (int i = 0; i < kWidth; ++i) r[i] = {c->min[i], c->max[i], c->absmax[i]};
    return std::pair{r, c->nonfinite};
  };
  for (int step = 0; step < 3; ++step) {
    for (int l = 0; l < kLayers; ++l) {
      const int64_t tokens = 2 + step;
      auto k = Random(tokens * kWidth, rng), v = Random(tokens * kWidth, rng);
      KVCC_ASSERT_OK(rows.Observe(l, k.data(), v.data(), tokens, kHeads, kDim));
      auto [kr, kn] = reduce(k, tokens);
      auto [vr, vn] = reduce(v, tokens);
      KVCC_ASSERT_OK(ranges.ObserveChannels(l, kr, kn, vr, vn, tokens));
    }
  }
  EXPECT_TRUE(rows.layers() == ranges.layers());
  auto k = Random(2 * kWidth, rng);
  k[kWidth + 1 * kDim + 3] = std::numeric_limits<float>::quiet_NaN();  // head 1, channel 3
  auto [kr, kn] = reduce(k, 2);
  EXPECT_EQ(kn[kDim + 3], 1);
  absl::Status s = ranges.ObserveChannels(0, kr, kn, kr, std::vector<int64_t>(kWidth, 0), 2);
  EXPECT_NE(s.message().find("layer 0 K holds 1 NaN/Inf values at kv head 1, channel 3"),
            std::string::npos) << s;
  EXPECT_FALSE(ranges.ObserveChannels(0, kr, kn, {}, {}, 2).ok());
  EXPECT_FALSE(ranges.ObserveChannels(kLayers, kr, kn, kr, kn, 2).ok());
  EXPECT_TRUE(rows.layers() == ranges.layers());  // the refused observations left no trace
}

std::vector<int32_t> Iota(int n) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = 1000 + i;
  return t;
}

TEST(CalibrationWindowsTest, ReproducibleForASeedAndDifferentAcrossSeeds) {
  const auto tokens = Iota(5000);
  KVCC_ASSERT_OK_AND_ASSIGN(a, DrawCalibrationWindows(tokens, 64, 8, 42, 1));
  KVCC_ASSERT_OK_AND_ASSIGN(b, DrawCalibrationWindows(tokens, 64, 8, 42, 1));
  KVCC_ASSERT_OK_AND_ASSIGN(c, DrawCalibrationWindows(tokens, 64, 8, 43, 1));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  ASSERT_EQ(a.size(), 8u);
  std::set<int32_t> starts;
  for (const auto& w : a) {
    ASSERT_EQ(w.size(), 64u);
    EXPECT_EQ(w[0], 1);  // BOS first
    // Contiguous text: consecutive ids of the iota text.
    for (size_t i = 2; i < w.size(); ++i) EXPECT_EQ(w[i], w[i - 1] + 1);
    starts.insert(w[1]);
  }
  EXPECT_GT(starts.size(), 1u);
}

TEST(CalibrationWindowsTest, CountIsCappedByTheText) {
  const auto tokens = Iota(1000);
  // 1000 text tokens / 99 per window (BOS + 99) = 10 windows, though 128 were asked for.
  KVCC_ASSERT_OK_AND_ASSIGN(w, DrawCalibrationWindows(tokens, 100, 128, 0, 1));
  EXPECT_EQ(w.size(), 10u);
  // Without BOS the windows are all text.
  KVCC_ASSERT_OK_AND_ASSIGN(nobos, DrawCalibrationWindows(tokens, 100, 128, 0, -1));
  EXPECT_EQ(nobos.size(), 10u);
  EXPECT_EQ(nobos[0].size(), 100u);
  EXPECT_GE(nobos[0][0], 1000);
  // Exactly one window's worth.
  KVCC_ASSERT_OK_AND_ASSIGN(one, DrawCalibrationWindows(Iota(99), 100, 128, 5, 1));
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0][1], 1000);
}

TEST(CalibrationWindowsTest, RejectsShortTextAndBadSizes) {
  absl::Status s = DrawCalibrationWindows(Iota(50), 100, 4, 0, 1).status();
  EXPECT_NE(s.message().find("50 tokens"), std::string::npos) << s;
  EXPECT_FALSE(DrawCalibrationWindows(Iota(50), 1, 4, 0, 1).ok());
  EXPECT_FALSE(DrawCalibrationWindows(Iota(50), 10, 0, 0, 1).ok());
}

TEST(EvaluationWindowsTest, TileTheTextInOrder) {
  const auto tokens = Iota(1000);
  KVCC_ASSERT_OK_AND_ASSIGN(all, ConsecutiveWindows(tokens, 100, 0, 1));
  ASSERT_EQ(all.size(), 10u);  // 99 text tokens each
  for (size_t i = 0; i < all.size(); ++i) {
    ASSERT_EQ(all[i].size(), 100u);
    EXPECT_EQ(all[i][0], 1);
    EXPECT_EQ(all[i][1], tokens[i * 99]);
    EXPECT_EQ(all[i][99], tokens[i * 99 + 98]);
  }
  KVCC_ASSERT_OK_AND_ASSIGN(two, ConsecutiveWindows(tokens, 100, 2, -1));
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[1][0], tokens[100]);
  EXPECT_FALSE(ConsecutiveWindows(Iota(10), 100, 0, 1).ok());
}

TEST(CalibrationDatasetTest, ResolvesNamedCorporaAndFiles) {
  const std::vector<std::string> dirs = {"/nonexistent", testing::SharedPath("data")};
  KVCC_ASSERT_OK_AND_ASSIGN(ptb, ResolveCalibrationDataset("ptb", dirs));
  EXPECT_EQ(ptb, testing::SharedPath("data/ptb/ptb.valid.txt"));
  KVCC_ASSERT_OK_AND_ASSIGN(wiki, ResolveCalibrationDataset("wikitext2", dirs));
  EXPECT_NE(wiki.find("wikitext-2/wiki.valid.tokens"), std::string::npos);
  KVCC_ASSERT_OK_AND_ASSIGN(ptb_test, ResolveDataset("ptb", DatasetSplit::kTest, dirs));
  EXPECT_EQ(ptb_test, testing::SharedPath("data/ptb/ptb.test.txt"));
  KVCC_ASSERT_OK_AND_ASSIGN(wiki_test, ResolveDataset("wikitext2", DatasetSplit::kTest, dirs));
  EXPECT_NE(wiki_test.find("wikitext-2-raw/wiki.test.raw"), std::string::npos);
  KVCC_ASSERT_OK_AND_ASSIGN(file, ResolveCalibrationDataset(ptb, dirs));
  EXPECT_EQ(file, ptb);
  KVCC_ASSERT_OK_AND_ASSIGN(text, ReadCalibrationText(ptb));
  EXPECT_GT(text.size(), 100000u);
}

TEST(CalibrationDatasetTest, C4AndUnknownNamesAreClearErrors) {
  absl::Status c4 = ResolveCalibrationDataset("c4", {testing::SharedPath("data")}).status();
  EXPECT_EQ(c4.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(c4.message().find("c4 is not available"), std::string::npos) << c4;
  absl::Status missing = ResolveCalibrationDataset("ptb", {"/nonexistent"}).status();
  EXPECT_NE(missing.message().find("ptb/ptb.valid.txt not found"), std::string::npos) << missing;
  absl::Status unknown = ResolveCalibrationDataset("no_such_corpus", {}).status();
  EXPECT_NE(unknown.message().find("neither ptb, wikitext2, tinystories nor an existing file"),
            std::string::npos)
      << unknown;
  const std::string empty = testing::TempDir("calib_empty") + "/empty.txt";
  { std::ofstream(empty).flush(); }
  absl::Status e = ReadCalibrationText(empty).status();
  EXPECT_NE(e.message().find("is empty"), std::string::npos) << e;
  // A FIFO or a device as the dataset is refused by what it is, never read or waited on.
  const std::string fifo = testing::TempDir("calib_fifo") + "/data.txt";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  absl::Status f = ReadCalibrationText(fifo).status();
  EXPECT_NE(f.message().find("calibration text " + fifo + " is a FIFO"), std::string::npos) << f;
  absl::Status z = ReadCalibrationText("/dev/zero").status();
  EXPECT_NE(z.message().find("a character device"), std::string::npos) << z;
}

// ---- calibration through the CPU runtime ----

// The stories260K model (shared, as the passes take it) and windows over its 512-token vocab.
std::shared_ptr<ir::Module> Stories() { return testing::LoadStories260K(); }

std::vector<std::vector<int32_t>> IdWindows(int count, int len, uint32_t seed) {
  return testing::RandomTokenWindows(count, len, 512, seed);
}

TEST(KvCalibratorTest, ObservesEveryLayerOfEveryWindowFromPositionZero) {
  auto module = Stories();
  ASSERT_NE(module, nullptr);
  const auto windows = IdWindows(3, 70, 4);
  int64_t progress_calls = 0;
  KvCalibrationRun run;
  run.threads = 1;
  run.progress = [&](int64_t done, int64_t total) {
    EXPECT_EQ(done, ++progress_calls);
    EXPECT_EQ(total, 3);
  };
  KVCC_ASSERT_OK_AND_ASSIGN(params, CalibrateKv(module, windows, {"ids", 99, 70, 4}, run));
  EXPECT_EQ(progress_calls, 3);
  EXPECT_EQ(params.calibration.samples, 3);  // what ran, not what was asked for
  EXPECT_EQ(params.model, passes::IdentityOf(*module));
  ASSERT_EQ(params.layers.size(), size_t(module->config.num_layers));

  // Reference: each window alone in a fresh engine, K/V collected by hand. Fresh sessions
  // start at position 0, so the calibrator must give exactly these ranges.
  const int heads = module->config.num_kv_heads, dim = module->config.head_dim;
  std::vector<passes::RangeStat> k_ref(params.layers.size()), v_ref(params.layers.size());
  std::vector<int64_t> tokens_ref(params.layers.size(), 0);
  for (const auto& w : windows) {
    KVCC_ASSERT_OK_AND_ASSIGN(backend, runtime::CreateBackend("cpu", 1));
    KVCC_ASSERT_OK_AND_ASSIGN(engine, runtime::Engine::Create(module, std::move(backend)));
    engine->executor().SetKvObserver([&](int layer, const float* k, const float* v,
                                         int64_t tokens, int, int) {
      for (int64_t i = 0; i < tokens * heads * dim; ++i) {
        k_ref[layer].Add(k[i]);
        v_ref[layer].Add(v[i]);
      }
      tokens_ref[layer] += tokens;
    });
    KVCC_ASSERT_OK_AND_ASSIGN(session, engine->CreateSession());
    KVCC_ASSERT_OK(engine->Prefill(session, w).status());
  }
  for (size_t l = 0; l < params.layers.size(); ++l) {
    EXPECT_EQ(params.layers[l].tokens, 3 * 70);
    EXPECT_EQ(params.layers[l].tokens, tokens_ref[l]);
    EXPECT_EQ(params.layers[l].k.layer, k_ref[l]) << "layer " << l;
    EXPECT_EQ(params.layers[l].v.layer, v_ref[l]) << "layer " << l;
    EXPECT_LT(params.layers[l].k.layer.min, params.layers[l].k.layer.max);
  }
  // The result survives the file and is accepted for this model.
  const std::string path = testing::TempDir("kv_calibrator") + "/kv_params.json";
  KVCC_ASSERT_OK(WriteKvParams(params, path));
  KVCC_ASSERT_OK_AND_ASSIGN(back, passes::ReadKvParams(path));
  EXPECT_EQ(back.layers, params.layers);
  KVCC_ASSERT_OK(passes::CheckKvParamsMatch(back, *module, path));
}

TEST(KvCalibratorTest, RejectsWindowsBeyondTheContextAndQuantizedCaches) {
  auto module = Stories();
  ASSERT_NE(module, nullptr);
  const int64_t ctx = module->config.max_position;
  absl::Status s = CalibrateKv(module, IdWindows(1, ctx + 1, 1), {"ids", 1, ctx + 1, 0}).status();
  EXPECT_NE(s.message().find("exceed the model's context"), std::string::npos) << s;
  KVCC_ASSERT_OK(passes::KvQuantizePass(passes::KvQuantScheme::kInt8Online).Run(*module));
  s = CalibrateKv(module, IdWindows(1, 8, 1), {"ids", 1, 8, 0}).status();
  EXPECT_NE(s.message().find("needs a full-precision KV cache"), std::string::npos) << s;
}

TEST(KvCalibratorTest, NonFiniteActivationsAreRejectedNamingLayerAndWindow) {
  auto module = Stories();
  ASSERT_NE(module, nullptr);
  // A damaged checkpoint: layer 2's k_proj weight is all NaN.
  ir::Value* w = module->graph.FindValue("model.layers.2.self_attn.k_proj.weight");
  ASSERT_NE(w, nullptr);
  ASSERT_EQ(w->type.dtype, ir::DType::kF32);
  std::vector<float> nans(w->type.NumElements(), std::numeric_limits<float>::quiet_NaN());
  std::vector<uint8_t> bytes(reinterpret_cast<uint8_t*>(nans.data()),
                             reinterpret_cast<uint8_t*>(nans.data()) + w->weight->size);
  w->weight = ir::WeightData::FromVector(std::move(bytes));
  absl::Status s = CalibrateKv(module, IdWindows(2, 16, 3), {"ids", 2, 16, 0}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("calibration window 0"), std::string::npos) << s;
  EXPECT_NE(s.message().find("layer 2 K"), std::string::npos) << s;
}

}  // namespace
}  // namespace kvcc::calibration
