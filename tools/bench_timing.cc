#include "tools/bench_timing.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ir/status_macros.h"

namespace kvcc::tools {

absl::StatusOr<double> TimeCalls(runtime::CudaBackend& gpu, int iters,
                                 const std::function<absl::Status()>& fn) {
  for (int i = 0; i < 3; ++i) KVCC_RETURN_IF_ERROR(fn());
  KVCC_RETURN_IF_ERROR(gpu.Synchronize());
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) KVCC_RETURN_IF_ERROR(fn());
  KVCC_RETURN_IF_ERROR(gpu.Synchronize());
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
}

absl::StatusOr<double> TimeGraph(runtime::CudaBackend& gpu, int iters,
                                 const std::function<absl::Status()>& fn) {
  for (int i = 0; i < 3; ++i) KVCC_RETURN_IF_ERROR(fn());
  KVCC_RETURN_IF_ERROR(gpu.Synchronize());
  cudaStream_t stream = gpu.context()->stream();
  if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
    cudaGetLastError();
    return absl::InternalError("cudaStreamBeginCapture failed");
  }
  absl::Status queued;
  for (int i = 0; i < iters && queued.ok(); ++i) queued = fn();
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  cudaGetLastError();
  KVCC_RETURN_IF_ERROR(queued);
  if (ended != cudaSuccess || graph == nullptr) {
    return absl::InternalError(absl::StrCat("cudaStreamEndCapture: ", cudaGetErrorString(ended)));
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (inst != cudaSuccess) {
    cudaGetLastError();
    return absl::InternalError(absl::StrCat("cudaGraphInstantiate: ", cudaGetErrorString(inst)));
  }
  constexpr int kReplays = 5;
  cudaGraphLaunch(exec, stream);
  absl::Status s = gpu.Synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < kReplays && s.ok(); ++r) {
    if (cudaGraphLaunch(exec, stream) != cudaSuccess) s = absl::InternalError("cudaGraphLaunch");
  }
  if (s.ok()) s = gpu.Synchronize();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  cudaGraphExecDestroy(exec);
  KVCC_RETURN_IF_ERROR(s);
  return secs / (kReplays * iters);
}

std::string Us(const absl::StatusOr<double>& t) {
  return t.ok() ? absl::StrFormat("%.1f", *t * 1e6) : std::string("-");
}

}  // namespace kvcc::tools
