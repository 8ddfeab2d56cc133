// The KV parameter file: exact round trip, atomic write, and clear rejection of corrupt,
// inconsistent, wrong-version and mismatched-model files.
#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
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

// The tiny config with two weights, so the weights fingerprint has something to cover.
std::unique_ptr<ir::Module> TinyModule(uint8_t fill = 1) {
  auto m = std::make_unique<ir::Module>();
  m->config = TinyConfig();
  for (const char* name : {"a", "b"}) {
    std::vector<uint8_t> bytes(64, fill);
    EXPECT_TRUE(m->graph
                    .AddWeight(name, {ir::DType::kU8, {64}},
                               ir::WeightData::FromVector(std::move(bytes)))
                    .ok());
  }
  return m;
}

// K and V of every layer constantly `value`: self-consistent files with implausible ranges.
KvParams ConstantParams(const ir::Module& m, float value) {
  const ir::ModelConfig& c = m.config;
  KvStatsAccumulator acc(c.num_layers, c.num_kv_heads, c.head_dim);
  std::vector<float> kv(2 * c.num_kv_heads * c.head_dim, value);
  for (int l = 0; l < c.num_layers; ++l) {
    EXPECT_TRUE(acc.Observe(l, kv.data(), kv.data(), 2, c.num_kv_heads, c.head_dim).ok());
  }
  KvParams p;
  p.model = IdentityOf(m);
  p.calibration = {"ptb", 1, 2, 0};
  p.layers = acc.layers();
  return p;
}

// Statistics of random observations with awkward floats (sub-normal-ish, huge, negative).
KvParams RandomParams(const ir::Module& m, uint32_t seed) {
  const ir::ModelConfig& c = m.config;
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
  p.model = IdentityOf(m);
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
  const auto m = TinyModule();
  const KvParams p = RandomParams(*m, 7);
  const std::string dir = testing::TempDir("kv_params_roundtrip");
  const std::string path = KvParamsPath(dir);
  KVCC_ASSERT_OK(WriteKvParams(p, path));
  KVCC_ASSERT_OK_AND_ASSIGN(back, ReadKvParams(path));
  EXPECT_EQ(back.model, p.model);
  EXPECT_EQ(back.calibration, p.calibration);
  EXPECT_EQ(back.layers, p.layers);  // every float bit-exact
  KVCC_ASSERT_OK(CheckKvParamsMatch(back, *m, path));
  // Re-serializing gives the same text: the file is a fixed point.
  EXPECT_EQ(KvParamsToJson(back), KvParamsToJson(p));
}

TEST(KvParamsTest, FileIsReadableJsonWithDerivedZpScale) {
  const KvParams p = RandomParams(*TinyModule(), 3);
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
  const std::string text = KvParamsToJson(RandomParams(*TinyModule(), 1));
  ExpectError(KvParamsFromJson(text.substr(0, text.size() / 2), "half.json").status(),
              "half.json");
  ExpectError(KvParamsFromJson("", "empty.json").status(), "not a JSON object");
  ExpectError(KvParamsFromJson("[1,2]", "array.json").status(), "not a JSON object");
  ExpectError(KvParamsFromJson("{\"format\": \"other\"}", "other.json").status(),
              "not a kvcc KV parameter file");
}

TEST(KvParamsTest, RejectsBadVersion) {
  const KvParams p = RandomParams(*TinyModule(), 2);
  ExpectError(ParseEdited(p, [](Json& j) { j["version"] = 3; }), "unsupported version 3");
  // Version 1 had no weights fingerprint.
  ExpectError(ParseEdited(p, [](Json& j) { j["version"] = 1; }), "unsupported version 1");
  ExpectError(ParseEdited(p, [](Json& j) { j["version"] = "1"; }), "unsupported version");
}

TEST(KvParamsTest, RejectsWrongLayerCount) {
  const KvParams p = RandomParams(*TinyModule(), 4);
  ExpectError(ParseEdited(p, [](Json& j) { j["layers"].erase(2); }),
              "has 2 entries but the model has 3 layers");
  ExpectError(ParseEdited(p, [](Json& j) { j["model"]["num_layers"] = 4; }),
              "the model has 4 layers");
  ExpectError(ParseEdited(p, [](Json& j) { std::swap(j["layers"][0], j["layers"][1]); }),
              "holds layer 1, expected 0");
}

TEST(KvParamsTest, RejectsNonFiniteAndInconsistentValues) {
  const KvParams p = RandomParams(*TinyModule(), 5);
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
  auto other = TinyModule();
  const KvParams p = RandomParams(*other, 6);
  other->config.rope_theta = 500000.0;  // same shapes, different K
  absl::Status s = CheckKvParamsMatch(p, *other, "x.json");
  ExpectError(s, "calibrated for a different model");
  ExpectError(s, "kvcc calibrate");
  other = TinyModule();
  other->config.num_layers = 4;
  ExpectError(CheckKvParamsMatch(p, *other, "x.json"), "3 layers");
}

TEST(KvParamsTest, RejectsOtherWeightsOfTheSameConfig) {
  const KvParams p = RandomParams(*TinyModule(1), 10);
  KVCC_ASSERT_OK(CheckKvParamsMatch(p, *TinyModule(1), "x.json"));
  absl::Status s = CheckKvParamsMatch(p, *TinyModule(2), "x.json");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  ExpectError(s, "x.json was calibrated for other weights");
  ExpectError(s, "re-run `kvcc calibrate`");
}

TEST(KvParamsTest, WeightsFingerprintCoversNamesTypesAndSampledBytes) {
  auto fingerprint = [](const std::string& name, std::vector<int64_t> shape, size_t poke) {
    ir::Graph g;
    ir::TensorType t{ir::DType::kU8, std::move(shape)};
    std::vector<uint8_t> bytes(static_cast<size_t>(t.NumBytes()), 7);
    if (poke < bytes.size()) bytes[poke] ^= 1;
    EXPECT_TRUE(g.AddWeight(name, t, ir::WeightData::FromVector(std::move(bytes))).ok());
    return WeightsFingerprint(g);
  };
  const size_t kBig = size_t{1} << 20, kNone = ~size_t{0};
  const std::string base = fingerprint("w", {int64_t(kBig)}, kNone);
  EXPECT_EQ(base.rfind("xxh64:", 0), 0u);
  EXPECT_EQ(base, fingerprint("w", {int64_t(kBig)}, kNone));
  EXPECT_NE(base, fingerprint("v", {int64_t(kBig)}, kNone));
  EXPECT_NE(base, fingerprint("w", {2, int64_t(kBig / 2)}, kNone));
  EXPECT_NE(base, fingerprint("w", {int64_t(kBig)}, 0));          // the first block
  EXPECT_NE(base, fingerprint("w", {int64_t(kBig)}, kBig - 1));   // the last block
  // A small tensor is hashed whole.
  EXPECT_NE(fingerprint("w", {1000}, kNone), fingerprint("w", {1000}, 555));
}

TEST(KvParamsTest, RejectsImplausibleRanges) {
  const auto m = TinyModule();
  ExpectError(KvParamsFromJson(KvParamsToJson(ConstantParams(*m, 0.0f)), "zero.json").status(),
              "every K and V range is [0, 0]");
  ExpectError(KvParamsFromJson(KvParamsToJson(ConstantParams(*m, 1e38f)), "huge.json").status(),
              "implausible for a K or V activation");
  ExpectError(KvParamsFromJson(KvParamsToJson(ConstantParams(*m, -2e4f)), "neg.json").status(),
              "beyond +-10000");
  KVCC_ASSERT_OK(KvParamsFromJson(KvParamsToJson(ConstantParams(*m, 3.0f)), "ok.json").status());
}

TEST(KvParamsTest, RejectsHugeAndNonIntegerCounts) {
  const KvParams p = RandomParams(*TinyModule(), 11);
  // Once multiplied unchecked (UBSan: signed overflow).
  ExpectError(ParseEdited(p,
                          [](Json& j) {
                            j["model"]["num_kv_heads"] = int64_t{1} << 40;
                            j["model"]["head_dim"] = int64_t{1} << 40;
                          }),
              "model.num_kv_heads");
  ExpectError(ParseEdited(p, [](Json& j) { j["model"]["num_layers"] = 3.5; }),
              "key 'model.num_layers' is 3.5");
  ExpectError(ParseEdited(p, [](Json& j) { j["model"]["num_layers"] = 1e300; }),
              "model.num_layers");
  ExpectError(ParseEdited(p, [](Json& j) { j["model"].erase("weights_fingerprint"); }),
              "model.weights_fingerprint' is missing");
  ExpectError(ParseEdited(p, [](Json& j) { j["layers"][1]["tokens"] = "7"; }),
              "layers[1].tokens");
  ExpectError(KvParamsFromJson(std::string(100000, '[') + std::string(100000, ']'), "deep.json")
                  .status(),
              "nested deeper");
}

TEST(KvParamsTest, ReadsOnlyRegularFiles) {
  const std::string dir = testing::TempDir("kv_params_nonregular");
  ASSERT_EQ(::mkfifo((dir + "/fifo.json").c_str(), 0644), 0);
  ExpectError(ReadKvParams(dir + "/fifo.json").status(), "is a FIFO");  // once blocked forever
  std::filesystem::create_symlink("/dev/zero", dir + "/zero.json");
  ExpectError(ReadKvParams(dir + "/zero.json").status(), "character device");
  std::filesystem::create_directories(dir + "/kv_params.json");
  ExpectError(ReadKvParams(dir + "/kv_params.json").status(), "is a directory");
}

TEST(KvParamsTest, MissingFileSaysToCalibrate) {
  auto r = ReadKvParams(testing::TempDir("kv_params_missing") + "/kv_params.json");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  ExpectError(r.status(), "kvcc calibrate");
}

TEST(KvParamsTest, CalibrationPassRejectsParamsOfAnotherModel) {
  auto m = frontend::LoadModel(testing::SourcePath("models/stories260K"));
  ASSERT_TRUE(m.ok()) << m.status();
  KvCalibrationPass pass(RandomParams(*TinyModule(), 8), "tiny.json");
  absl::Status s = pass.Run(**m);
  ExpectError(s, "tiny.json was calibrated for a different model");
}

TEST(KvParamsTest, CalibrationPassAnnotatesPerHeadRanges) {
  auto m = frontend::LoadModel(testing::SourcePath("models/stories260K"));
  ASSERT_TRUE(m.ok()) << m.status();
  const KvParams p = RandomParams(**m, 9);
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
