// `kvcc compile`: a checkpoint (or an imported artifact) to a deployable artifact: imported,
// KV-quantized (calibrating through a caller-supplied function when the scheme needs
// parameters and none are given), fused, its 4-bit weights packed (pipeline/w4_packing.h), the
// lowered graph written with a marker so opening
// it runs no pass, every CUDA kernel of the plan compiled with NVRTC for each requested arch
// (no GPU needed), tuning.json, the side files, and kvcc_artifact.json with the digest of every
// file. Written into a temporary sibling renamed at the end (ir/atomic_dir.h): an interrupted
// or failed compile leaves the target as it was.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/module.h"
#include "passes/kv_params.h"
#include "passes/kv_quant_scheme.h"
#include "pipeline/compiled_manifest.h"
#include "pipeline/open_options.h"
#include "runtime/cuda/kernel_tuning.h"

namespace kvcc::pipeline {

struct CompileOptions {
  std::string model_path;  // a Hugging Face checkpoint or a `kvcc import` artifact
  std::string out_dir;
  LowerOptions lower;      // scheme and --kv-params; fusions always run
  // Makes the parameters of a calibrated scheme when neither lower.kv_params nor a
  // kv_params.json beside the model exists; unset: that case is an error.
  std::function<absl::StatusOr<passes::KvParams>()> calibrate;
  std::vector<std::string> arches;  // "sm_90a", ...; empty: DefaultArches()
  // Times the lowered module's decode kernels on the GPU (`--autotune`): its winners go into
  // tuning.json, and the kernels for them and for the heuristics both go in. Unset: the
  // heuristic choices are recorded.
  std::function<absl::StatusOr<runtime::KernelTuning>(const ir::Module&)> autotune;
  std::map<std::string, std::string> recorded_options;  // the flags, for the manifest
  // Called after each kernel with (kernels done, kernels total).
  std::function<void(int64_t, int64_t)> kernel_progress;
};

struct CompileResult {
  passes::KvQuantScheme kv_scheme = passes::KvQuantScheme::kNone;
  CompiledManifest manifest;
  int kernels = 0;
  int64_t nvrtc_compiles = 0;  // the rest came from the kernel cache
  std::string kv_params_source;  // where calibrated parameters came from ("" when none)
  std::vector<std::string> w4_plain;  // 4-bit linears the packed layout cannot hold, and why
};

// The present GPU's arch, or sm_90a and sm_80 without one.
std::vector<std::string> DefaultArches();

absl::StatusOr<CompileResult> CompileArtifact(const CompileOptions& options);

}  // namespace kvcc::pipeline
