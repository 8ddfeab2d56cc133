#include "runtime/backend.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "runtime/cpu_backend.h"
#include "runtime/cuda_backend.h"

namespace kvcc::runtime {

void StepBatch::ComputeSeqLens() {
  std::map<int64_t, int64_t> longest;
  for (size_t t = 0; t < positions.size(); ++t) {
    int64_t& m = longest[sessions[t]];
    m = std::max<int64_t>(m, int64_t{positions[t]} + 1);
  }
  seq_lens.resize(positions.size());
  for (size_t t = 0; t < positions.size(); ++t) seq_lens[t] = longest[sessions[t]];
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const std::string& device, int threads) {
  if (device == "cpu" || device.empty()) return std::unique_ptr<Backend>(new CpuBackend(threads));
  if (device == "cuda") {
    auto cuda = CudaBackend::Create(0);
    if (!cuda.ok()) return cuda.status();
    return std::unique_ptr<Backend>(*std::move(cuda));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown device '", device,
                                                 "'; expected cpu or cuda"));
}

}  // namespace kvcc::runtime
