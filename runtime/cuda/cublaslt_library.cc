#include "runtime/cuda/cublaslt_library.h"

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "absl/strings/str_cat.h"
#include "ir/lazy_library.h"

namespace kvcc::runtime {
namespace {

ir::LazyLibrary& Library() {
  static auto* lib = new ir::LazyLibrary(
      absl::StrCat("libcublasLt.so.", CUBLAS_VER_MAJOR), "cuBLASLt, needed for GEMMs on the GPU",
      "install the CUDA toolkit's libcublas or put it on LD_LIBRARY_PATH",
      reinterpret_cast<const void*>(&cudaGetDeviceCount));
  return *lib;
}

}  // namespace

void PreloadCublasLt() { Library().Preload(); }

absl::Status CublasLtLoaded() { return Library().Loaded(); }

void* CublasLtSymbol(const char* name) { return Library().Symbol(name); }

}  // namespace kvcc::runtime

// Forwards of the functions kvcc uses; a missing library or symbol reads as not initialised
// (CublasLtGemm::Create checks CublasLtLoaded() first, which names the cause).
#define KVCC_LT_FORWARD(name, params, args)                                     \
  extern "C" cublasStatus_t CUBLASWINAPI name params {                          \
    static const auto fn =                                                      \
        reinterpret_cast<decltype(&name)>(kvcc::runtime::CublasLtSymbol(#name)); \
    return fn == nullptr ? CUBLAS_STATUS_NOT_INITIALIZED : fn args;             \
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
KVCC_LT_FORWARD(cublasLtMatmulAlgoInit,
                (cublasLtHandle_t h, cublasComputeType_t compute, cudaDataType_t scale,
                 cudaDataType_t a, cudaDataType_t b, cudaDataType_t c, cudaDataType_t d, int id,
                 cublasLtMatmulAlgo_t* algo),
                (h, compute, scale, a, b, c, d, id, algo))
KVCC_LT_FORWARD(cublasLtMatmulAlgoCheck,
                (cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t Ad,
                 cublasLtMatrixLayout_t Bd, cublasLtMatrixLayout_t Cd, cublasLtMatrixLayout_t Dd,
                 const cublasLtMatmulAlgo_t* algo, cublasLtMatmulHeuristicResult_t* result),
                (h, d, Ad, Bd, Cd, Dd, algo, result))
KVCC_LT_FORWARD(cublasLtMatmulAlgoConfigSetAttribute,
                (cublasLtMatmulAlgo_t * algo, cublasLtMatmulAlgoConfigAttributes_t attr,
                 const void* buf, size_t bytes),
                (algo, attr, buf, bytes))
KVCC_LT_FORWARD(cublasLtMatmulAlgoConfigGetAttribute,
                (const cublasLtMatmulAlgo_t* algo, cublasLtMatmulAlgoConfigAttributes_t attr,
                 void* buf, size_t bytes, size_t* written),
                (algo, attr, buf, bytes, written))

// Not a cublasStatus_t: 0 when the library is missing.
extern "C" size_t CUBLASWINAPI cublasLtGetVersion(void) {
  static const auto fn =
      reinterpret_cast<decltype(&cublasLtGetVersion)>(kvcc::runtime::CublasLtSymbol("cublasLtGetVersion"));
  return fn == nullptr ? 0 : fn();
}
