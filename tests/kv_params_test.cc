// The KV parameter file: exact round trip, atomic write, and clear rejection of corrupt,
// inconsistent, wrong-version and mismatched-model files.
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "frontend/model_loader.h"
#include "gtest/gtest.h"
#include "ir/op_names.h"
#include "passes/kv_calibration_pass.h"
#include "passes/kv_params.h"
#include "ir/kv_quant.h"
#include "tests/test_util.h"

namespace kvcc::passes {
namespace {

ir::ModelConfig TinyConfig() {
  ir::ModelConfig c = testing::TinyLlamaConfig(3);
  c.max_position = 128;
  return c;
}

// Statistics of random observations with awkward floats (sub-normal-ish, huge, negative).
KvParams RandomParams(const ir::ModelConfig& c, uint32_t seed) {
  KvStatsAccumulator acc(c.num_layers, c.num_kv_heads, c.head_dim);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  const int64_t width = c.num_kv_heads * c.head_dim, tokens = 7;
  for (int l = 0; l < c.num_layers; ++l) {
    std::vector<float> k(tokens * width), v(tokens * width);
    for (auto& x : k) x = normal(rng) * std::pow(10.0f, static_cast<float>(l) - 1.0f);
    for (auto& x : v) x = normal(rng) / 3.0f;
    EXPECT_TRUE(acc.Observe(l, k.data(), v.data(), tokens, c.num_kv_heads, c.head_dim).ok());
  }
  KvParams p;
  p.model = IdentityOf(c);
  p.calibration = {"ptb", 17, 512, 1234};
  p.layers = acc.layers();
  return p;
}

using Json = nlohmann::ordered_json;

absl::Status ParseEdited(const KvParams& p, const std::function<void(Json&)>& edit) {
  Json j = Json::parse(KvParamsToJson(p));
  edit(j);
  return KvParamsFromJson(j.dump(1), "edited.json").status();
}

void ExpectError(const absl::Status& s, const std::string& needle) {
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(needle), std::string::npos) << s;
}

TEST(KvParamsTest, RoundTripsExactlyThroughAFile) {
  const ir::ModelConfig c = TinyConfig();
  const KvParams p = RandomParams(c, 7);
  const std::string dir = testing::TempDir("kv_params_roundtrip");
  const std::string path = KvParamsPath(dir);
  KVCC_ASSERT_OK(WriteKvParams(p, path));
  KVCC_ASSERT_OK_AND_ASSIGN(back, ReadKvParams(path));
  EXPECT_EQ(back.model, p.model);
  EXPECT_EQ(back.calibration, p.calibration);
  EXPECT_EQ(back.layers, p.layers);  // every float bit-exact
  KVCC_ASSERT_OK(CheckKvParamsMatch(back, c, path));
  // Re-serializing gives the same text: the file is a fixed point.
  EXPECT_EQ(KvParamsToJson(back), KvParamsToJson(p));
}

TEST(KvParamsTest, FileIsReadableJsonWithDerivedZpScale) {
  const KvParams p = RandomParams(TinyConfig(), 3);
  Json j = Json::parse(KvParamsToJson(p));
  EXPECT_EQ(j["format"], "kvcc-kv-params");
  EXPECT_EQ(j["version"], kKvParamsVersion);
  EXPECT_EQ(j["model"]["num_layers"], 3);
  EXPECT_EQ(j["calibration"]["seqlen"], 512);
  for (int l = 0; l < 3; ++l) {
    for (const char* t : {"k", "v"}) {
      const Json& e = j["layers"][l][t];
      const KvTensorStats& s = l >= 0 && std::string(t) == "k" ? p.layers[l].k : p.layers[l].v;
      ir::ZpScale want = ir::CalibratedParams(s.layer.min, s.layer.max, 255);
      EXPECT_EQ(static_cast<float>(e["zp"].get<double>()), want.zp);
      EXPECT_EQ(static_cast<float>(e["scale"].get<double>()), want.scale);
      EXPECT_EQ(static_cast<float>(e["min"].get<double>()), s.layer.min);
      EXPECT_EQ(e["per_head"]["max"].size(), 2u);
      EXPECT_EQ(e["per_channel"]["absmax"].size(), 8u);
    }
  }
}

TEST(KvParamsTest, RejectsCorruptText) {
  const std::string text = KvParamsToJson(RandomParams(TinyConfig(), 1));
  ExpectError(KvParamsFromJson(text.substr(0, text.size() / 2), "half.json").status(),
              "half.json");
  ExpectError(KvParamsFromJson("", "empty.json").status(), "not a JSON object");
  ExpectError(KvParamsFromJson("[1,2]", "array.json").status(), "not a JSON object");
  ExpectError(KvParamsFromJson("{\"format\": \"other\"}", "other.json").status(),
              "not a kvcc KV parameter file");
}

TEST(KvParamsTest, RejectsBadVersion) {
  const KvParams p = RandomParams(TinyConfig(), 2);
  ExpectError(ParseEdited(p, [](Json& j) { j["version"] = 2; }), "unsupported version 2");
  ExpectError(ParseEdited(p, [](Json& j) { j["version"] = "1"; }), "unsupported version");
}

TEST(KvParamsTest, RejectsWrongLayerCount) {
  const KvParams p = RandomParams(TinyConfig(), 4);
  ExpectError(ParseEdited(p, [](Json& j) { j["layers"].erase(2); }),
              "has 2 entries but the model has 3 layers");
  ExpectError(ParseEdited(p, [](Json& j) { j["model"]["num_layers"] = 4; }),
              "the model has 4 layers");
  ExpectError(ParseEdited(p, [](Json& j) { std::swap(j["layers"][0], j["layers"][1]); }),
              "holds layer 1, expected 0");
}

TEST(KvParamsTest, RejectsNonFiniteAndInconsistentValues) {
  const KvParams p = RandomParams(TinyConfig(), 5);
  // JSON has no NaN literal; nlohmann writes NaN as null, a string is what a hand edit gives.
  ExpectError(ParseEdited(p, [](Json& j) { j["layers"][1]["k"]["min"] = NAN; }),
              "layers[1].k.min: expected a number");
  ExpectError(ParseEdited(p, [](Json& j) { j["layers"][1]["v"]["max"] = "nan"; }),
              "layers[1].v.max: expected a number");
  ExpectError(ParseEdited(p, [](Json& j) { j["layers"][0]["k"]["scale"] = 1e300; }),
              "not a finite float");
  ExpectError(ParseEdited(p,
                          [](Json& j) {
                            auto& k = j["layers"][2]["k"];
                            std::swap(k["min"], k["max"]);
                          }),
              "layers[2].k: min");
  ExpectError(ParseEdited(p,
                          [](Json& j) {
                            double zp = j["layers"][0]["v"]["zp"].get<double>();
                            j["layers"][0]["v"]["zp"] = zp + 1.0;
                          }),
              "disagree with min/max");
  ExpectError(ParseEdited(p,
                          [](Json& j) {
                            // A consistent channel edit that the per-head/per-layer
                            // ranges no longer cover.
                            auto& ch = j["layers"][0]["k"]["per_channel"];
                            ch["max"][3] = 1000.0;
                            ch["absmax"][3] = 1000.0;
                          }),
              "disagree with the per-channel statistics");
  ExpectError(ParseEdited(p,
                          [](Json& j) { j["layers"][0]["v"]["per_channel"]["min"].erase(0); }),
              "expected arrays of 8 entries");
  ExpectError(ParseEdited(p, [](Json& j) { j["layers"][0]["v"].erase("per_head"); }),
              "key 'per_head' not found");
  ExpectError(ParseEdited(p, [](Json& j) { j["layers"][0]["tokens"] = 0; }),
              "no tokens were observed");
}

TEST(KvParamsTest, RejectsAnotherModel) {
  const ir::ModelConfig c = TinyConfig();
  const KvParams p = RandomParams(c, 6);
  ir::ModelConfig other = c;
  other.rope_theta = 500000.0;  // same shapes, different K
  absl::Status s = CheckKvParamsMatch(p, other, "x.json");
  ExpectError(s, "calibrated for a different model");
  ExpectError(s, "kvcc calibrate");
  other = c;
  other.num_layers = 4;
  ExpectError(CheckKvParamsMatch(p, other, "x.json"), "3 layers");
}

TEST(KvParamsTest, MissingFileSaysToCalibrate) {
  auto r = ReadKvParams(testing::TempDir("kv_params_missing") + "/kv_params.json");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  ExpectError(r.status(), "kvcc calibrate");
}

TEST(KvParamsTest, CalibrationPassRejectsParamsOfAnotherModel) {
  auto m = frontend::LoadModel(testing::SourcePath("models/stories260K"));
  ASSERT_TRUE(m.ok()) << m.status();
  KvCalibrationPass pass(RandomParams(TinyConfig(), 8), "tiny.json");
  absl::Status s = pass.Run(**m);
  ExpectError(s, "tiny.json was calibrated for a different model");
}

TEST(KvParamsTest, CalibrationPassAnnotatesPerHeadRanges) {
  auto m = frontend::LoadModel(testing::SourcePath("models/stories260K"));
  ASSERT_TRUE(m.ok()) << m.status();
  const KvParams p = RandomParams((*m)->config, 9);
  KvCalibrationPass pass(p, "p.json");
  KVCC_ASSERT_OK(pass.Run(**m));
  int seen = 0;
  for (const auto& n : (*m)->graph.nodes()) {
    if (n->op != ir::op::kKvCacheWrite) continue;
    ++seen;
    KVCC_ASSERT_OK_AND_ASSIGN(r, ReadCalibratedRanges(*n));
    const KvLayerStats& s = p.layers[*n->Int("layer")];
    for (size_t h = 0; h < s.k.heads.size(); ++h) {
      EXPECT_EQ(r.k_min[h], s.k.heads[h].min);
      EXPECT_EQ(r.k_max[h], s.k.heads[h].max);
      EXPECT_EQ(r.v_min[h], s.v.heads[h].min);
      EXPECT_EQ(r.v_max[h], s.v.heads[h].max);
    }
  }
  EXPECT_EQ(seen, (*m)->config.num_layers);
  EXPECT_EQ((*m)->metadata["kv_calibration"], "dataset=ptb samples=17 seqlen=512 seed=1234");
}

}  // namespace
}  // namespace kvcc::passes
