#include "runtime/cuda/cublaslt_library.h"

#include <cublasLt.h>
#include <dlfcn.h>

#include <future>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"
#include "ir/startup_marks.h"

namespace kvcc::runtime {
namespace {

const std::string& LibraryName() {
  static const std::string name = absl::StrCat("libcublasLt.so.", CUBLAS_VER_MAJOR);
  return name;
}

struct Opened {
  void* handle = nullptr;
  std::string error;
};

std::shared_future<Opened>& Load() {
  static std::once_flag once;
  static std::shared_future<Opened> future;
  std::call_once(once, [] {
    future = std::async(std::launch::async, [] {
               Opened o;
               o.handle = dlopen(LibraryName().c_str(), RTLD_NOW | RTLD_LOCAL);
               if (o.handle == nullptr) {
                 const char* e = dlerror();
                 o.error = e != nullptr ? e : "unknown dlopen error";
               }
               ir::StartupMark("cublaslt_loaded");
               return o;
             }).share();
  });
  return future;
}

// The library's `name`, or null when it did not open or lacks it.
void* Symbol(const char* name) {
  const Opened& o = Load().get();
  return o.handle == nullptr ? nullptr : dlsym(o.handle, name);
}

}  // namespace

void PreloadCublasLt() { Load(); }

absl::Status CublasLtLoaded() {
  const Opened& o = Load().get();
  if (o.handle != nullptr) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "cannot load ", LibraryName(), " (cuBLASLt, needed for GEMMs on the GPU): ", o.error,
      "; install the CUDA toolkit's libcublas or put it on LD_LIBRARY_PATH"));
}

}  // namespace kvcc::runtime

// Forwards of the functions kvcc uses; a missing library or symbol reads as not initialised
// (CublasLtGemm::Create checks CublasLtLoaded() first, which names the cause).
#define KVCC_LT_FORWARD(name, params, args)                                                \
  extern "C" cublasStatus_t CUBLASWINAPI name params {                                     \
    static const auto fn = reinterpret_cast<decltype(&name)>(kvcc::runtime::Symbol(#name)); \
    return fn == nullptr ? CUBLAS_STATUS_NOT_INITIALIZED : fn args;                        \
  }

KVCC_LT_FORWARD(cublasLtCreate, (cublasLtHandle_t * h), (h))
KVCC_LT_FORWARD(cublasLtDestroy, (cublasLtHandle_t h), (h))
KVCC_LT_FORWARD(cublasLtMatmul,
                (cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void* alpha, const void* A,
                 cublasLtMatrixLayout_t Ad, const void* B, cublasLtMatrixLayout_t Bd,
                 const void* beta, const void* C, cublasLtMatrixLayout_t Cd, void* D,
                 cublasLtMatrixLayout_t Dd, const cublasLtMatmulAlgo_t* algo, void* ws,
                 size_t ws_bytes, cudaStream_t stream),
                (h, d, alpha, A, Ad, B, Bd, beta, C, Cd, D, Dd, algo, ws, ws_bytes, stream))
KVCC_LT_FORWARD(cublasLtMatmulAlgoGetHeuristic,
                (cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t Ad,
                 cublasLtMatrixLayout_t Bd, cublasLtMatrixLayout_t Cd, cublasLtMatrixLayout_t Dd,
                 cublasLtMatmulPreference_t pref, int requested,
                 cublasLtMatmulHeuristicResult_t results[], int* returned),
                (h, d, Ad, Bd, Cd, Dd, pref, requested, results, returned))
KVCC_LT_FORWARD(cublasLtMatmulDescCreate,
                (cublasLtMatmulDesc_t * d, cublasComputeType_t compute, cudaDataType_t scale),
                (d, compute, scale))
KVCC_LT_FORWARD(cublasLtMatmulDescDestroy, (cublasLtMatmulDesc_t d), (d))
KVCC_LT_FORWARD(cublasLtMatmulDescSetAttribute,
                (cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const void* buf,
                 size_t bytes),
                (d, attr, buf, bytes))
KVCC_LT_FORWARD(cublasLtMatmulPreferenceCreate, (cublasLtMatmulPreference_t * p), (p))
KVCC_LT_FORWARD(cublasLtMatmulPreferenceDestroy, (cublasLtMatmulPreference_t p), (p))
KVCC_LT_FORWARD(cublasLtMatmulPreferenceSetAttribute,
                (cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t attr,
                 const void* buf, size_t bytes),
                (p, attr, buf, bytes))
KVCC_LT_FORWARD(cublasLtMatrixLayoutCreate,
                (cublasLtMatrixLayout_t * l, cudaDataType type, uint64_t rows, uint64_t cols,
                 int64_t ld),
                (l, type, rows, cols, ld))
KVCC_LT_FORWARD(cublasLtMatrixLayoutDestroy, (cublasLtMatrixLayout_t l), (l))
