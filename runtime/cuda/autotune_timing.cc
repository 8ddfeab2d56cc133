#include "runtime/cuda/autotune_timing.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"

namespace kvcc::runtime {

absl::Status AutotuneCudaStatus(cudaError_t err, absl::string_view tuner, absl::string_view what) {
  if (err == cudaSuccess) return absl::OkStatus();
  cudaGetLastError();
  return absl::InternalError(absl::StrCat(tuner, ": ", what, ": ", cudaGetErrorString(err)));
}

AutotuneScratch::~AutotuneScratch() {
  if (p != nullptr) cudaFree(p);
}

absl::Status AutotuneScratch::Allocate(size_t bytes, int fill, absl::string_view tuner) {
  const size_t n = std::max<size_t>(bytes, 16);
  KVCC_RETURN_IF_ERROR(
      AutotuneCudaStatus(cudaMalloc(&p, n), tuner, absl::StrCat("cudaMalloc(", bytes, ")")));
  return AutotuneCudaStatus(cudaMemset(p, fill, n), tuner, "cudaMemset");
}

int64_t L2BustBytes() {
  int l2 = 0;
  if (cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0) != cudaSuccess || l2 <= 0) {
    cudaGetLastError();
    l2 = 64 << 20;
  }
  return int64_t{2} * l2;
}

absl::StatusOr<double> TimeCalls(cudaStream_t stream, int warmups, int iters,
                                 absl::FunctionRef<absl::Status()> run, absl::string_view tuner) {
  for (int i = 0; i < warmups; ++i) KVCC_RETURN_IF_ERROR(run());
  cudaEvent_t start = nullptr, stop = nullptr;
  KVCC_RETURN_IF_ERROR(AutotuneCudaStatus(cudaEventCreate(&start), tuner, "cudaEventCreate"));
  if (auto s = AutotuneCudaStatus(cudaEventCreate(&stop), tuner, "cudaEventCreate"); !s.ok()) {
    cudaEventDestroy(start);
    return s;
  }
  cudaEventRecord(start, stream);
  absl::Status s;
  for (int i = 0; i < iters && s.ok(); ++i) s = run();
  cudaEventRecord(stop, stream);
  absl::Status sync =
      AutotuneCudaStatus(cudaEventSynchronize(stop), tuner, "cudaEventSynchronize");
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  KVCC_RETURN_IF_ERROR(s);
  KVCC_RETURN_IF_ERROR(sync);
  return 1000.0 * ms / iters;
}

}  // namespace kvcc::runtime
