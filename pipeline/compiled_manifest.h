// kvcc_artifact.json, the manifest of an artifact made by `kvcc compile`: the kvcc version that
// wrote it (another version refuses it), the source checkpoint and its fingerprint, the KV
// scheme, the GPU arches of its kernels, the compile options, and the size and XXH64 of every
// file but model.onnx and model.weights (which model.manifest.json and model.onnx bind). Plain
// C++ over ir/, so the fuzzer builds it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvcc::pipeline {

inline constexpr char kCompiledManifestName[] = "kvcc_artifact.json";
// The module metadata entry (model.onnx's "kvcc.meta.lowered") marking a graph `kvcc compile`
// already lowered: its value is the KV scheme name, and opening it runs no pass.
inline constexpr char kLoweredMetadataKey[] = "lowered";
// Bumped whenever an artifact's lowered graph or kernels would change meaning.
inline constexpr char kKvccVersion[] = "0.5.0";

struct FileDigest {
  int64_t bytes = 0;
  uint64_t xxh64 = 0;
};

struct CompiledManifest {
  std::string kvcc_version = kKvccVersion;
  std::string source;              // the checkpoint compiled
  std::string source_fingerprint;  // its config and weights fingerprints
  std::string kv_scheme;           // passes::KvQuantSchemeName
  // The 4-bit linears' layout, e.g. "kvcc_w4_strip16_chunk64 v1: 224 packed, 0 plain"; empty
  // for a model without them.
  std::string w4_layout;
  std::vector<std::string> arches;
  std::map<std::string, std::string> options;  // flag -> value as given
  std::map<std::string, FileDigest> files;     // relative path -> digest
};

std::string CompiledManifestToJson(const CompiledManifest& manifest);
// Parses and checks format, keys, types, that file paths are relative and stay inside the
// artifact; a kvcc_version other than this kvcc's is FailedPrecondition naming both.
absl::StatusOr<CompiledManifest> ParseCompiledManifest(absl::string_view text,
                                                       const std::string& source);

// The digest of the file `dir`/`relative` (read whole).
absl::StatusOr<FileDigest> DigestFile(const std::string& dir, const std::string& relative);
// Every file the manifest lists has its size and digest; else DataLoss naming the file.
absl::Status VerifyFiles(const CompiledManifest& manifest, const std::string& dir);

}  // namespace kvcc::pipeline
