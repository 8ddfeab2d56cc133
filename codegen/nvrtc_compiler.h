// Compiles rendered kernel source to a cubin with NVRTC and reads ptxas's resource report
// (registers, spills, stack) from the compile log, so resource use is known without a GPU.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvcc::codegen {

struct ResourceUsage {
  int registers = -1;  // -1: not reported
  int spill_store_bytes = 0;
  int spill_load_bytes = 0;
  int stack_bytes = 0;
  int shared_bytes = 0;
};

struct CompiledKernel {
  std::string cubin;
  std::string log;  // NVRTC/ptxas output (includes the ptxas -v report)
  ResourceUsage usage;
  bool from_cache = false;
};

// NVRTC's version, "13.0".
std::string NvrtcVersion();

// The options kvcc compiles with for `arch_name` ("sm_90a") with this process's NVRTC, or with
// NVRTC `nvrtc_version` ("13.0"; the options depend on it), which does not load the library.
std::vector<std::string> NvrtcOptions(absl::string_view arch_name);
std::vector<std::string> NvrtcOptions(absl::string_view arch_name,
                                      absl::string_view nvrtc_version);

// Compiles `source` (whose entry point is `kernel_name`) for `arch_name`; its #include "x.cuh"
// lines resolve against the embedded codegen files (kernel_templates.h). A compile error comes
// back as InvalidArgument carrying the program name and the full compiler log.
absl::StatusOr<CompiledKernel> CompileCuda(absl::string_view program_name,
                                           absl::string_view source,
                                           absl::string_view kernel_name,
                                           absl::string_view arch_name);

// How many programs CompileCuda has compiled in this process (every NVRTC compile goes
// through it), so a run can show that an artifact's kernels made NVRTC unnecessary.
int64_t NvrtcCompileCount();

// Reads the "Used N registers", "N bytes stack frame, N bytes spill stores, N bytes spill loads"
// and "N bytes smem" lines ptxas prints for `kernel_name`.
ResourceUsage ParsePtxasReport(absl::string_view log, absl::string_view kernel_name);

}  // namespace kvcc::codegen
