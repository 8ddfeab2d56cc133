// Where models live on disk: opens either form a model path can take (a kvcc artifact directory
// holding model.onnx, or a Hugging Face checkpoint directory, imported on the fly), finds the
// tokenizer files that go with it, and writes artifacts from checkpoints (`kvcc import`).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "frontend/quantization_config.h"
#include "ir/module.h"
#include "ir/onnx_io.h"

namespace kvcc::frontend {

// Files an artifact carries beside model.onnx so tools need not reach back to the checkpoint.
inline constexpr const char* kModelSideFiles[] = {
    "tokenizer.json",          "tokenizer.model",         "tokenizer_config.json",
    "special_tokens_map.json", "generation_config.json", "config.json"};

enum class ModelDirKind { kArtifact, kHfCheckpoint };

// An artifact when dir/model.onnx exists, a checkpoint when dir/config.json does; else an error
// naming the directory and what was looked for.
absl::StatusOr<ModelDirKind> ClassifyModelDir(const std::string& dir);

// The module of an artifact (ir::ReadOnnx) or of a checkpoint (ImportHfCheckpoint). An explicit
// `format` (--model-format) must be the one the checkpoint or artifact holds; `read` applies to
// an artifact (a deferred weights digest: ir::ReadOnnxOptions).
absl::StatusOr<std::unique_ptr<ir::Module>> LoadModel(const std::string& path,
                                                      ModelFormat format = ModelFormat::kAuto,
                                                      const ir::ReadOnnxOptions& read = {});

// The directory holding the tokenizer (tokenizer.model or tokenizer.json) for a model path:
// the model directory itself for checkpoints and for artifacts written by `kvcc import`.
absl::StatusOr<std::string> FindTokenizerDir(const std::string& model_path);

// Copies those of kModelSideFiles that exist in `from` into `to`, each atomically; returns the
// names copied.
absl::StatusOr<std::vector<std::string>> CopyModelSideFiles(const std::string& from,
                                                            const std::string& to);

// `kvcc import`: imports `hf_dir`, verifies, writes the artifact (model.onnx, weights, manifest)
// and the side files into a temporary sibling of out_dir and swaps it in with one rename
// (ir/atomic_dir.h), so no file of an earlier artifact there survives. out_dir must be absent,
// empty or an earlier artifact. Returns the imported module.
absl::StatusOr<std::unique_ptr<ir::Module>> ImportToArtifact(
    const std::string& hf_dir, const std::string& out_dir,
    ModelFormat format = ModelFormat::kAuto);

}  // namespace kvcc::frontend
