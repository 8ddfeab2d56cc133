#include "ir/artifact_manifest.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "ir/json_reader.h"
#include "ir/status_macros.h"
#include "ir/xxhash64.h"

namespace kvcc::ir {
namespace {

constexpr char kFormat[] = "kvcc-artifact-manifest";
constexpr char kOnnxKey[] = "model.onnx";
constexpr char kRerun[] = " (re-run `kvcc import` to rebuild the artifact)";

}  // namespace

bool ParseXxh64Hex(absl::string_view hex, uint64_t* digest) {
  if (hex.size() != 16) return false;
  uint64_t v = 0;
  for (char ch : hex) {
    int d;
    if (ch >= '0' && ch <= '9') {
      d = ch - '0';
    } else if (ch >= 'a' && ch <= 'f') {
      d = ch - 'a' + 10;
    } else {
      return false;
    }
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  *digest = v;
  return true;
}

ArtifactManifest ManifestOf(absl::string_view onnx_bytes) {
  return {static_cast<int64_t>(onnx_bytes.size()), Xxh64Hash(onnx_bytes.data(), onnx_bytes.size())};
}

std::string ManifestToJson(const ArtifactManifest& m) {
  nlohmann::ordered_json j = {{"format", kFormat},
            {"version", kManifestVersion},
            {kOnnxKey, {{"bytes", m.onnx_bytes}, {"xxh64", Xxh64Hex(m.onnx_xxh64)}}}};
  return j.dump(1) + "\n";
}

absl::StatusOr<Json> ParseArtifactJson(absl::string_view text, const std::string& source,
                                       absl::string_view format, int version, int max_depth,
                                       int64_t max_bytes) {
  JsonLimits limits;
  limits.max_depth = max_depth;
  limits.max_bytes = max_bytes;
  KVCC_ASSIGN_OR_RETURN(Json j, ParseJson(text, source, limits));
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
  }
  JsonReader top(j, source);
  KVCC_ASSIGN_OR_RETURN(std::string got, top.String("format"));
  if (got != format) return top.Bad("format", top.At("format"), absl::StrCat("\"", format, "\""));
  KVCC_RETURN_IF_ERROR(top.Int("version", version, version).status());
  return j;
}

absl::StatusOr<ArtifactManifest> ParseManifest(absl::string_view text, const std::string& source) {
  auto parsed = ParseArtifactJson(text, source, kFormat, kManifestVersion, 4, 1 << 16);
  if (!parsed.ok()) {
    return absl::Status(parsed.status().code(), absl::StrCat(parsed.status().message(), kRerun));
  }
  const Json& j = *parsed;
  JsonReader top(j, source);
  KVCC_ASSIGN_OR_RETURN(JsonReader onnx, top.Object(kOnnxKey));
  ArtifactManifest m;
  KVCC_ASSIGN_OR_RETURN(m.onnx_bytes, onnx.Int("bytes", 0, std::numeric_limits<int>::max()));
  KVCC_ASSIGN_OR_RETURN(std::string hex, onnx.String("xxh64"));
  if (!ParseXxh64Hex(hex, &m.onnx_xxh64)) {
    return onnx.Bad("xxh64", onnx.At("xxh64"), "16 lowercase hex digits");
  }
  return m;
}

absl::Status CheckManifest(const ArtifactManifest& m, absl::string_view onnx_bytes,
                           const std::string& onnx_path) {
  const ArtifactManifest got = ManifestOf(onnx_bytes);
  if (got.onnx_bytes != m.onnx_bytes) {
    return absl::DataLossError(absl::StrCat(onnx_path, " is ", got.onnx_bytes, " bytes but ",
                                            kManifestFileName, " records ", m.onnx_bytes,
                                            ": the file is damaged or from another artifact",
                                            kRerun));
  }
  if (got.onnx_xxh64 != m.onnx_xxh64) {
    return absl::DataLossError(absl::StrCat(onnx_path, " has XXH64 ", Xxh64Hex(got.onnx_xxh64),
                                            " but ", kManifestFileName, " records ",
                                            Xxh64Hex(m.onnx_xxh64),
                                            ": the file is damaged or from another artifact",
                                            kRerun));
  }
  return absl::OkStatus();
}

}  // namespace kvcc::ir
