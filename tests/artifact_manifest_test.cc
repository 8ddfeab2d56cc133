// The artifact manifest: a round trip, and clear errors for damaged text and for a model.onnx of
// another size or digest.
#include "ir/artifact_manifest.h"

#include <string>

#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace kvcc::ir {
namespace {

void ExpectError(const absl::Status& s, const std::string& needle) {
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(needle), std::string::npos) << s;
}

TEST(ArtifactManifestTest, RoundTripsAndChecks) {
  const std::string onnx = "pretend model.onnx bytes";
  const ArtifactManifest m = ManifestOf(onnx);
  EXPECT_EQ(m.onnx_bytes, static_cast<int64_t>(onnx.size()));
  KVCC_ASSERT_OK_AND_ASSIGN(back, ParseManifest(ManifestToJson(m), "m.json"));
  EXPECT_EQ(back.onnx_bytes, m.onnx_bytes);
  EXPECT_EQ(back.onnx_xxh64, m.onnx_xxh64);
  KVCC_ASSERT_OK(CheckManifest(back, onnx, "a/model.onnx"));
  std::string flipped = onnx;
  flipped[3] ^= 1;
  absl::Status s = CheckManifest(back, flipped, "a/model.onnx");
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  ExpectError(s, "a/model.onnx has XXH64");
  ExpectError(s, "kvcc import");
  ExpectError(CheckManifest(back, onnx + "x", "a/model.onnx"), "bytes but");
}

TEST(ArtifactManifestTest, RejectsDamagedText) {
  const std::string good = ManifestToJson(ManifestOf("x"));
  ExpectError(ParseManifest("", "m.json").status(), "m.json");
  ExpectError(ParseManifest("[]", "m.json").status(), "not a JSON object");
  ExpectError(ParseManifest(good.substr(0, good.size() / 2), "m.json").status(), "invalid JSON");
  ExpectError(ParseManifest(R"({"format":"other","version":1,"model.onnx":{"bytes":1,"xxh64":"0000000000000000"}})", "m.json").status(),
              "key 'format'");
  ExpectError(ParseManifest(R"({"format":"kvcc-artifact-manifest","version":2,"model.onnx":{"bytes":1,"xxh64":"0000000000000000"}})", "m.json").status(),
              "key 'version'");
  ExpectError(ParseManifest(R"({"format":"kvcc-artifact-manifest","version":1,"model.onnx":{"bytes":1.5,"xxh64":"0000000000000000"}})", "m.json").status(),
              "key 'model.onnx.bytes'");
  ExpectError(ParseManifest(R"({"format":"kvcc-artifact-manifest","version":1,"model.onnx":{"bytes":1,"xxh64":"000000000000000G"}})", "m.json").status(),
              "16 lowercase hex digits");
  ExpectError(ParseManifest(R"({"format":"kvcc-artifact-manifest","version":1})", "m.json").status(),
              "key 'model.onnx' is missing");
  ExpectError(ParseManifest(std::string(100, '[') + std::string(100, ']'), "m.json").status(),
              "nested deeper");
}

TEST(ArtifactManifestTest, ParsesOnlyExactHex) {
  uint64_t d = 0;
  EXPECT_TRUE(ParseXxh64Hex("00000000000000ff", &d));
  EXPECT_EQ(d, 255u);
  EXPECT_FALSE(ParseXxh64Hex("00000000000000FF", &d));
  EXPECT_FALSE(ParseXxh64Hex("ff", &d));
  EXPECT_FALSE(ParseXxh64Hex("00000000000000ff0", &d));
}

}  // namespace
}  // namespace kvcc::ir
