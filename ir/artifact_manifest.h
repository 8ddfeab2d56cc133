// model.manifest.json, the small file beside an artifact's model.onnx that holds its size and
// XXH64 digest, so a damaged or swapped graph (an edited attribute, a flipped bit in a shape) is
// refused when the artifact is opened. model.onnx in turn holds the digest of model.weights
// (onnx_io.h), so the three files are bound together.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ir/json_reader.h"

namespace kvcc::ir {

inline constexpr char kManifestFileName[] = "model.manifest.json";
inline constexpr int kManifestVersion = 1;

struct ArtifactManifest {
  int64_t onnx_bytes = 0;
  uint64_t onnx_xxh64 = 0;
};

ArtifactManifest ManifestOf(absl::string_view onnx_bytes);
std::string ManifestToJson(const ArtifactManifest& manifest);
// Parses and checks the format, version, keys and types; `source` names the file in errors.
absl::StatusOr<ArtifactManifest> ParseManifest(absl::string_view text, const std::string& source);
// An error naming `source` unless `onnx_bytes` has the manifest's size and digest.
absl::Status CheckManifest(const ArtifactManifest& manifest, absl::string_view onnx_bytes,
                           const std::string& onnx_path);

// Parses `text` (at most `max_bytes`, nested at most `max_depth`) as the JSON object every kvcc
// artifact file is: "format" `format` and "version" `version`; errors name `source`.
absl::StatusOr<Json> ParseArtifactJson(absl::string_view text, const std::string& source,
                                       absl::string_view format, int version, int max_depth,
                                       int64_t max_bytes);

// Parses "0123456789abcdef" (exactly 16 lowercase hex digits) as a digest.
bool ParseXxh64Hex(absl::string_view hex, uint64_t* digest);

}  // namespace kvcc::ir
