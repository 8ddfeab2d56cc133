#include "codegen/nvrtc_library.h"

#include <cuda_runtime_api.h>
#include <nvrtc.h>

#include "absl/strings/str_cat.h"
#include "ir/lazy_library.h"

namespace kvcc::codegen {
namespace {

ir::LazyLibrary& Library() {
  // NVRTC's soname follows the toolkit's major version (libnvrtc.so.13 for CUDA 13).
  static auto* lib = new ir::LazyLibrary(
      absl::StrCat("libnvrtc.so.", CUDART_VERSION / 1000), "NVRTC, which compiles the kernels",
      "install the CUDA toolkit's libnvrtc or put it on LD_LIBRARY_PATH",
      reinterpret_cast<const void*>(&cudaGetDeviceCount));
  return *lib;
}

}  // namespace

void PreloadNvrtc() { Library().Preload(); }

absl::Status NvrtcLoaded() { return Library().Loaded(); }

void* NvrtcSymbol(const char* name) { return Library().Symbol(name); }

}  // namespace kvcc::codegen

// Forwards of the functions kvcc uses; a missing library reads as an internal NVRTC error
// (CompileCuda checks NvrtcLoaded() first, which names the cause).
#define KVCC_NVRTC_FORWARD(name, params, args)                                  \
  extern "C" nvrtcResult name params {                                          \
    static const auto fn =                                                      \
        reinterpret_cast<decltype(&name)>(kvcc::codegen::NvrtcSymbol(#name));   \
    return fn == nullptr ? NVRTC_ERROR_INTERNAL_ERROR : fn args;                \
  }

KVCC_NVRTC_FORWARD(nvrtcVersion, (int* major, int* minor), (major, minor))
KVCC_NVRTC_FORWARD(nvrtcCreateProgram,
                   (nvrtcProgram * prog, const char* src, const char* name, int num_headers,
                    const char* const* headers, const char* const* include_names),
                   (prog, src, name, num_headers, headers, include_names))
KVCC_NVRTC_FORWARD(nvrtcDestroyProgram, (nvrtcProgram * prog), (prog))
KVCC_NVRTC_FORWARD(nvrtcCompileProgram,
                   (nvrtcProgram prog, int num_options, const char* const* options),
                   (prog, num_options, options))
KVCC_NVRTC_FORWARD(nvrtcGetProgramLogSize, (nvrtcProgram prog, size_t* bytes), (prog, bytes))
KVCC_NVRTC_FORWARD(nvrtcGetProgramLog, (nvrtcProgram prog, char* log), (prog, log))
KVCC_NVRTC_FORWARD(nvrtcGetCUBINSize, (nvrtcProgram prog, size_t* bytes), (prog, bytes))
KVCC_NVRTC_FORWARD(nvrtcGetCUBIN, (nvrtcProgram prog, char* cubin), (prog, cubin))

extern "C" const char* nvrtcGetErrorString(nvrtcResult result) {
  static const auto fn = reinterpret_cast<decltype(&nvrtcGetErrorString)>(
      kvcc::codegen::NvrtcSymbol("nvrtcGetErrorString"));
  return fn == nullptr ? "NVRTC is not loaded" : fn(result);
}
