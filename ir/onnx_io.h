// Artifact serialization: a Module as an ONNX ModelProto (ops in the "ai.kvcc" domain, the model
// config and metadata as metadata_props) plus one external-data weights file in which every
// tensor starts on a 64-byte boundary, so the runtime can mmap it. Writes are atomic.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "ir/module.h"

namespace kvcc::ir {

inline constexpr char kOnnxFileName[] = "model.onnx";
inline constexpr char kWeightsFileName[] = "model.weights";

// Writes dir/model.onnx and dir/model.weights (creating dir).
absl::Status WriteOnnx(const Module& module, const std::string& dir);
// Reads an artifact directory written by WriteOnnx; weights are mmap'd.
absl::StatusOr<std::unique_ptr<Module>> ReadOnnx(const std::string& dir);

}  // namespace kvcc::ir
