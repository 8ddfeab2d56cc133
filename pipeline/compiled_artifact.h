// Opening what `kvcc compile` wrote: the manifest checked (kvcc version, every file's digest)
// before anything is loaded, tuning.json checked against the kernels the graph needs, and the
// CUDA backend's kernel source made from kernels/ (cubins before any NVRTC call).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "ir/module.h"
#include "pipeline/compiled_manifest.h"
#include "pipeline/open_options.h"
#include "runtime/cuda/kernel_plan.h"
#include "runtime/cuda/kernel_tuning.h"

namespace kvcc::pipeline {

// False for a checkpoint or a `kvcc import` artifact. For a compiled artifact (it holds
// kvcc_artifact.json): true once the manifest parses, is of this kvcc's version and every file
// it lists has its recorded size and digest; else the error naming the file.
absl::StatusOr<bool> CheckCompiledArtifact(const std::string& path);
absl::StatusOr<CompiledManifest> ReadCompiledManifest(const std::string& dir);

// dir/tuning.json, each entry naming a decode kernel that `module` needs (an entry for an
// unknown kernel is an error naming the file and the kernel).
absl::StatusOr<runtime::KernelTuning> ReadArtifactTuning(const std::string& dir,
                                                         const ir::Module& module);

// The kernels and tuning of the compiled artifact `dir` for an engine on config.device (empty
// for the CPU): dir/kernels before the kernel cache, and no NVRTC with config.no_jit.
absl::StatusOr<runtime::CudaKernelSource> OpenArtifactKernels(const std::string& dir,
                                                              const ir::Module& module,
                                                              const EngineConfig& config);

// `kvcc inspect` of a compiled artifact: version, source, scheme, arches, options, every
// kernel (arch, registers, spills, spec), the tuning, and every file's digest with whether it
// matches (the report lists mismatches instead of stopping at the first).
absl::StatusOr<std::string> DescribeCompiledArtifact(const std::string& dir);

}  // namespace kvcc::pipeline
