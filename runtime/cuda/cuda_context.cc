#include "runtime/cuda/cuda_context.h"

#include <cstdint>
#include <future>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "ir/startup_marks.h"
#include "ir/status_macros.h"

namespace kvcc::runtime {

absl::Status CudaCheck(cudaError_t err, absl::string_view what) {
  if (err == cudaSuccess) return absl::OkStatus();
  // Clear the sticky-free error state so the next call is not blamed for this one.
  cudaGetLastError();
  const std::string msg = absl::StrCat(what, ": ", cudaGetErrorName(err), ": ",
                                       cudaGetErrorString(err));
  if (err == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(msg);
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver) {
    return absl::FailedPreconditionError(msg);
  }
  return absl::InternalError(msg);
}

bool CudaDeviceAvailable() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return count > 0;
}

std::string DefaultDeviceName() { return CudaDeviceAvailable() ? "cuda" : "cpu"; }

namespace {
std::mutex prewarm_mu;
std::shared_future<void>* prewarm = nullptr;  // leaked: never joined at exit
}  // namespace

void PrewarmCudaContext(int device) {
  std::lock_guard<std::mutex> lock(prewarm_mu);
  if (prewarm != nullptr) return;
  prewarm = new std::shared_future<void>(std::async(std::launch::async, [device] {
                                           // Errors resurface in Create, which reports them.
                                           if (cudaSetDevice(device) == cudaSuccess) cudaFree(nullptr);
                                         }).share());
}

void AwaitPrewarmedCudaContext() {
  std::lock_guard<std::mutex> lock(prewarm_mu);
  if (prewarm != nullptr) prewarm->wait();
}

absl::StatusOr<std::shared_ptr<CudaContext>> CudaContext::Create(int device) {
  AwaitPrewarmedCudaContext();
  ir::StartupMark("context_prewarmed");
  absl::StatusOr<codegen::GpuTarget> target = codegen::DetectGpuTarget(device);
  if (!target.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("device 'cuda' is unavailable (", target.status().message(),
                     "); use --device cpu"));
  }
  std::shared_ptr<CudaContext> ctx(new CudaContext());
  ctx->device_ = device;
  ctx->target_ = *target;
  KVCC_RETURN_IF_ERROR(CudaCheck(cudaSetDevice(device), "cudaSetDevice"));
  cudaDeviceProp prop;
  if (auto s = CudaCheck(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
      !s.ok()) {
    return s;
  }
  ctx->device_name_ = prop.name;
  ctx->ShrinkLimits();
  ir::StartupMark("context_limits");
  if (auto s = CudaCheck(cudaStreamCreateWithFlags(&ctx->stream_, cudaStreamNonBlocking),
                         "cudaStreamCreate");
      !s.ok()) {
    return s;
  }
  // Activations are allocated and freed per op; keeping freed blocks in the pool makes that
  // cheap, and makes the pool's footprint (what cudaMemGetInfo sees) the true peak.
  cudaMemPool_t pool;
  if (auto s = CudaCheck(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool");
      !s.ok()) {
    return s;
  }
  uint64_t threshold = UINT64_MAX;
  if (auto s = CudaCheck(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold),
                         "cudaMemPoolSetAttribute(release threshold)");
      !s.ok()) {
    return s;
  }
  ir::StartupMark("context");
  return ctx;
}

void CudaContext::ShrinkLimits() {
  // The context reserves local memory for stack size x the most threads the device can hold
  // (1 KiB x 2048 x 132 SMs = 264 MiB on an H100) whether or not a kernel uses it. None of
  // kvcc's kernels recurse, so every launch's stack need is known to the driver, which grows
  // the reservation to what a kernel needs ("the driver automatically increases the
  // per-thread stack size for each kernel launch as needed", cuCtxSetLimit) and keeps it.
  // No kvcc kernel calls printf or malloc, so their FIFO and heap are kept to the minimum.
  // These are savings, not requirements: a driver that refuses a value keeps its default.
  const std::pair<cudaLimit, size_t> kLimits[] = {
      {cudaLimitStackSize, 0}, {cudaLimitPrintfFifoSize, 0}, {cudaLimitMallocHeapSize, 0}};
  for (const auto& [limit, value] : kLimits) {
    if (cudaDeviceSetLimit(limit, value) != cudaSuccess) cudaGetLastError();
  }
  size_t v = 0;
  if (cudaDeviceGetLimit(&v, cudaLimitStackSize) == cudaSuccess) {
    stack_limit_bytes_ = static_cast<int64_t>(v);
  } else {
    cudaGetLastError();
  }
}

CudaContext::~CudaContext() {
  if (stream_ != nullptr) {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
  // Hand the pool's cached blocks back, so a later context in this process (the memory
  // benchmark runs several in turn) starts from what it allocates itself.
  cudaMemPool_t pool;
  if (cudaDeviceGetDefaultMemPool(&pool, device_) == cudaSuccess) cudaMemPoolTrimTo(pool, 0);
  for (auto& [key, lib] : libraries_) cudaLibraryUnload(lib);
  cudaGetLastError();
}

absl::StatusOr<cudaLibrary_t> CudaContext::LoadLibrary(const std::string& cubin) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = libraries_.find(cubin);
  if (it == libraries_.end()) {
    cudaLibrary_t lib;
    if (auto s = CudaCheck(cudaLibraryLoadData(&lib, cubin.data(), nullptr, nullptr, 0, nullptr,
                                               nullptr, 0),
                           "cudaLibraryLoadData");
        !s.ok()) {
      return s;
    }
    it = libraries_.emplace(cubin, lib).first;
  }
  return it->second;
}

absl::StatusOr<cudaKernel_t> CudaContext::GetKernel(cudaLibrary_t library,
                                                    const std::string& name) {
  cudaKernel_t kernel;
  KVCC_RETURN_IF_ERROR(CudaCheck(cudaLibraryGetKernel(&kernel, library, name.c_str()),
                                 absl::StrCat("cudaLibraryGetKernel(", name, ")")));
  return kernel;
}

absl::Status CudaContext::Synchronize() {
  return CudaCheck(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
}

absl::StatusOr<CudaMemoryInfo> CudaContext::MemoryInfo() const {
  size_t free_b = 0, total_b = 0;
  KVCC_RETURN_IF_ERROR(CudaCheck(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo"));
  return CudaMemoryInfo{static_cast<int64_t>(free_b), static_cast<int64_t>(total_b)};
}

}  // namespace kvcc::runtime
