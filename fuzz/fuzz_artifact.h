// The small artifact the ONNX reader fuzzer starts from: one decoder layer that uses every op,
// several weight dtypes, an omitted optional operand and double-list attributes. The fuzzer maps
// its weights file; fuzz_seeds writes its model.onnx as the seed.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "ir/module.h"

namespace kvcc::fuzz {

void BuildFuzzModule(ir::Module* module);
// Writes BuildFuzzModule's artifact (model.onnx + model.weights) into dir.
absl::Status WriteFuzzArtifact(const std::string& dir);

}  // namespace kvcc::fuzz
