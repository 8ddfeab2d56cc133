// Turns a Hugging Face checkpoint directory (config.json + safetensors) into an ir::Module that
// follows the decoder graph convention (docs: the importer writes it, passes and backends rely
// on it). Weights stay mmap'd views in the checkpoint's dtype; only InternLM2's interleaved wqkv
// is rewritten, into q-then-k-then-v row order.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "frontend/quantization_config.h"
#include "frontend/safetensors.h"
#include "ir/model_config.h"
#include "ir/module.h"

namespace kvcc::frontend {

// Reads dir/config.json and the checkpoint's safetensors and builds the verified module.
// `format` is checked against config.json's quantization_config (frontend/quantization_config.h);
// AWQ/GPTQ linears become 4-bit `linear` nodes (ir/group_quant.h).
absl::StatusOr<std::unique_ptr<ir::Module>> ImportHfCheckpoint(
    const std::string& dir, ModelFormat format = ModelFormat::kAuto);

// The same from an already parsed config and opened checkpoint. Every tensor the config implies
// must exist with that shape and a float dtype (f32, f16, bf16); extra tensors are ignored.
// `config_file` names the config in shape-mismatch messages. Linears `quant` converts are read
// as 4-bit tensors instead (frontend/w4_checkpoint_format.h).
absl::StatusOr<std::unique_ptr<ir::Module>> BuildHfModule(
    const ir::ModelConfig& config, const Checkpoint& checkpoint, const std::string& config_file,
    const QuantizationConfig& quant = QuantizationConfig());

}  // namespace kvcc::frontend
