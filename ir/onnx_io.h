// Artifact serialization: a Module as an ONNX ModelProto (ops in the "ai.kvcc" domain, the model
// config and metadata as metadata_props) plus one external-data weights file in which every
// tensor starts on a 64-byte boundary, so the runtime can mmap it. Writes are atomic.
//
// Encoding choices a reader of model.onnx (Netron, tests/python/check_onnx.py) should know:
// - Double attributes (eps, rope theta, calibration scales) must survive exactly, which ONNX's
//   float32 FLOAT/FLOATS cannot do. They are STRING/STRINGS attributes holding the shortest
//   decimal text that parses back to the same double ("500000", "1e-05"), marked with
//   doc_string kDoubleAttrDoc, so Netron shows the number as text.
// - An omitted optional operand is the empty input name "".
// - The token dimension is dim_param "tokens"; every node output has a value_info (graph outputs
//   are typed in graph.output).
// - Initializers are external data in kWeightsFileName only (keys location, offset, length).
// - metadata_props: "kvcc.config" holds ModelConfig::ToJson(), "kvcc.meta.<key>" each metadata
//   entry, "kvcc.weights_xxh64" the XXH64 of the whole weights file (padding included).
// - model.manifest.json (ir/artifact_manifest.h) beside it holds model.onnx's size and XXH64.
// Opening checks all three digests and the config against the graph (ir/config_check.h), so a
// damaged file or files mixed from two artifacts are refused, never run.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ir/mapped_file.h"
#include "ir/module.h"

namespace kvcc::ir {

inline constexpr char kOnnxFileName[] = "model.onnx";
inline constexpr char kWeightsFileName[] = "model.weights";
inline constexpr int64_t kWeightAlignment = 64;
inline constexpr char kDoubleAttrDoc[] = "kvcc:f64";
inline constexpr char kConfigMetadataKey[] = "kvcc.config";
inline constexpr char kMetadataKeyPrefix[] = "kvcc.meta.";
inline constexpr char kWeightsDigestKey[] = "kvcc.weights_xxh64";
// The ONNX IR version written: 10 is the first that has INT4 tensors.
inline constexpr int64_t kOnnxIrVersion = 10;
// The default-domain opset declared beside ai.kvcc (the graph uses no standard op).
inline constexpr int64_t kOnnxDefaultOpset = 21;

struct ReadOnnxOptions {
  // Leave the per-chunk weights digests unchecked in Module::unverified_weights for the first
  // reader of the weights (ir/weights_digest.h). An artifact without chunk digests is checked
  // at once either way.
  bool defer_chunk_digests = false;
};

// Writes dir/model.weights, dir/model.onnx and dir/model.manifest.json (creating dir), each
// atomically. The module must verify.
absl::Status WriteOnnx(const Module& module, const std::string& dir);
// Reads an artifact directory written by WriteOnnx; weights are mmap'd. The manifest and the
// weights digest are checked first: a mismatch is DataLoss naming the file.
absl::StatusOr<std::unique_ptr<Module>> ReadOnnx(const std::string& dir,
                                                 const ReadOnnxOptions& options = {});

// ReadOnnx after the file reads: parses the bytes of model.onnx and points the weights into
// `weights` (the mapped model.weights), checking its digest and the config against the graph
// (not the manifest: the caller has the file). `dir` only names files in error messages. Every
// malformed input is an error status; the fuzzer drives this entry point.
absl::StatusOr<std::unique_ptr<Module>> ParseOnnx(absl::string_view model_bytes,
                                                  std::shared_ptr<const MappedFile> weights,
                                                  const std::string& dir,
                                                  const ReadOnnxOptions& options = {});

}  // namespace kvcc::ir
