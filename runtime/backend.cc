#include "runtime/backend.h"

#include <map>

#include "absl/strings/str_cat.h"

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

absl::StatusOr<Tensor> Backend::QuantizedLinear(const Tensor&, const QuantizedWeight&,
                                                const Tensor*) {
  return absl::UnimplementedError(
      absl::StrCat("the ", name(), " backend cannot run 4-bit (AWQ/GPTQ) linears"));
}

}  // namespace kvcc::runtime
