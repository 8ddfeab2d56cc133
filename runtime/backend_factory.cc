#include "runtime/backend_factory.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"
#include "runtime/cpu_backend.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/thread_pool.h"

namespace kvcc::runtime {

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const std::string& device, int threads,
                                                       CudaKernelSource cuda_kernels) {
  if (device == "cpu" || device.empty()) {
    if (auto s = ThreadPool::CheckThreadCount(threads); !s.ok()) return s;
    return std::unique_ptr<Backend>(new CpuBackend(threads));
  }
  if (device == "cuda") {
    KVCC_ASSIGN_OR_RETURN(auto cuda, CudaBackend::Create(0, std::move(cuda_kernels)));
    cuda->SetHalfActivations(kModelActivationDType == ir::DType::kF16);
    return std::unique_ptr<Backend>(std::move(cuda));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown device '", device,
                                                 "'; expected cpu or cuda"));
}

}  // namespace kvcc::runtime
