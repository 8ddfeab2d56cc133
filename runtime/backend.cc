#include "runtime/backend.h"

#include <cmath>
#include <limits>
#include <map>

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"
#include "runtime/log_softmax.h"

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

absl::StatusOr<std::vector<Tensor>> Backend::FromHostWeights(
    const std::vector<Tensor>& hosts, const std::vector<std::string>& names,
    ir::WeightsChunkDigests*) {
  std::vector<Tensor> out;
  for (size_t i = 0; i < hosts.size(); ++i) {
    auto t = FromHost(hosts[i]);
    if (!t.ok()) {
      return absl::Status(t.status().code(), absl::StrCat("weight '", names[i], "': ",
                                                          t.status().message()));
    }
    out.push_back(*std::move(t));
  }
  return out;
}

absl::StatusOr<Tensor> Backend::QuantizedLinear(const Tensor&, const QuantizedWeight&,
                                                const Tensor*) {
  return absl::UnimplementedError(
      absl::StrCat("the ", name(), " backend cannot run 4-bit (AWQ/GPTQ) linears"));
}

absl::StatusOr<std::vector<int32_t>> Backend::SampleRows(const Tensor& logits,
                                                         const std::vector<SampleRow>& rows) {
  if (logits.rank() != 2 || logits.dtype() != ir::DType::kF32 ||
      logits.dim(0) != static_cast<int64_t>(rows.size())) {
    return absl::InvalidArgumentError(absl::StrCat("sampling: logits ", logits.ToString(),
                                                   " do not hold one f32 row for each of ",
                                                   rows.size(), " requests"));
  }
  KVCC_ASSIGN_OR_RETURN(auto host, ToHost(logits));
  const int64_t vocab = host.dim(1);
  static const std::vector<int32_t> kNone;
  std::vector<int32_t> out;
  for (size_t r = 0; r < rows.size(); ++r) {
    KVCC_ASSIGN_OR_RETURN(auto id, Sampler::Pick(rows[r].params, host.data<float>() + r * vocab,
                                                 vocab, rows[r].history ? *rows[r].history : kNone,
                                                 rows[r].uniform));
    out.push_back(id);
  }
  return out;
}

absl::Status CheckNllTargets(const Tensor& logits, const std::vector<int32_t>& targets) {
  if (logits.rank() != 2 || logits.dtype() != ir::DType::kF32 ||
      logits.dim(0) != static_cast<int64_t>(targets.size())) {
    return absl::InvalidArgumentError(absl::StrCat("target nll: logits ", logits.ToString(),
                                                   " do not hold one f32 row for each of ",
                                                   targets.size(), " targets"));
  }
  for (size_t r = 0; r < targets.size(); ++r) {
    if (targets[r] < -1 || targets[r] >= logits.dim(1)) {
      return absl::InvalidArgumentError(absl::StrCat("target nll: target ", targets[r], " of row ",
                                                     r, " is outside the vocabulary of ",
                                                     logits.dim(1), " (or -1 for none)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<double>> Backend::TargetNll(const Tensor& logits,
                                                       const std::vector<int32_t>& targets) {
  KVCC_RETURN_IF_ERROR(CheckNllTargets(logits, targets));
  KVCC_ASSIGN_OR_RETURN(auto host, ToHost(logits));
  const int64_t vocab = host.dim(1);
  std::vector<double> out(targets.size(), 0.0);
  for (size_t r = 0; r < targets.size(); ++r) {
    if (targets[r] < 0) continue;
    const float* row = host.data<float>() + r * vocab;
    out[r] = LogSumExp(row, vocab) - row[targets[r]];
  }
  return out;
}

absl::StatusOr<ColumnStats> Backend::ColumnRanges(const Tensor& x) {
  if (x.rank() != 2 || x.dtype() != ir::DType::kF32) {
    return absl::InvalidArgumentError(
        absl::StrCat("column ranges: ", x.ToString(), " is not an f32 [rows, cols] tensor"));
  }
  KVCC_ASSIGN_OR_RETURN(auto host, ToHost(x));
  const int64_t rows = host.dim(0), cols = host.dim(1);
  ColumnStats s;
  s.min.assign(cols, std::numeric_limits<float>::infinity());
  s.max.assign(cols, -std::numeric_limits<float>::infinity());
  s.absmax.assign(cols, 0.0f);
  s.nonfinite.assign(cols, 0);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = host.data<float>() + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = row[c];
      if (!std::isfinite(v)) {
        ++s.nonfinite[c];
        continue;
      }
      s.min[c] = std::min(s.min[c], v);
      s.max[c] = std::max(s.max[c], v);
      s.absmax[c] = std::max(s.absmax[c], std::fabs(v));
    }
  }
  return s;
}

}  // namespace kvcc::runtime
