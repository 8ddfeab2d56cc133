#include "passes/kv_stats.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"

namespace kvcc::passes {
namespace {

absl::Status CheckFinite(int layer, const char* tensor, const float* data, int64_t tokens,
                         int kv_heads, int head_dim) {
  const int64_t width = int64_t{kv_heads} * head_dim;
  for (int64_t t = 0; t < tokens; ++t) {
    const float* row = data + t * width;
    for (int64_t c = 0; c < width; ++c) {
      if (!std::isfinite(row[c])) {
        return absl::InvalidArgumentError(absl::StrCat(
            "calibration data of layer ", layer, " ", tensor, " holds ", row[c], " at token ", t,
            ", kv head ", c / head_dim, ", channel ", c % head_dim,
            "; the model produced non-finite activations on the calibration text"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

KvStatsAccumulator::KvStatsAccumulator(int num_layers, int kv_heads, int head_dim)
    : kv_heads_(kv_heads), head_dim_(head_dim), layers_(num_layers > 0 ? num_layers : 0) {
  for (KvLayerStats& l : layers_) {
    for (KvTensorStats* t : {&l.k, &l.v}) {
      t->heads.resize(kv_heads > 0 ? kv_heads : 0);
      t->channels.resize(kv_heads > 0 && head_dim > 0 ? size_t(kv_heads) * head_dim : 0);
    }
  }
}

absl::Status KvStatsAccumulator::Observe(int layer, const float* k, const float* v,
                                         int64_t tokens, int kv_heads, int head_dim) {
  if (layer < 0 || layer >= num_layers()) {
    return absl::InvalidArgumentError(absl::StrCat("observed layer ", layer, " but the model has ",
                                                   num_layers(), " layers"));
  }
  if (kv_heads != kv_heads_ || head_dim != head_dim_) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", layer, ": observed ", kv_heads,
                                                   " kv heads x ", head_dim, ", expected ",
                                                   kv_heads_, " x ", head_dim_));
  }
  if (tokens < 0 || (tokens > 0 && (k == nullptr || v == nullptr))) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", layer, ": bad observation"));
  }
  KVCC_RETURN_IF_ERROR(CheckFinite(layer, "K", k, tokens, kv_heads, head_dim));
  KVCC_RETURN_IF_ERROR(CheckFinite(layer, "V", v, tokens, kv_heads, head_dim));
  // The rows reduced per channel (all finite, as just checked), merged like a reduced
  // observation.
  const int64_t width = int64_t{kv_heads} * head_dim;
  std::vector<RangeStat> kc(width), vc(width);
  for (auto [data, c] : {std::pair{k, &kc}, std::pair{v, &vc}}) {
    for (int64_t i = 0; i < tokens; ++i) {
      const float* row = data + i * width;
      for (int64_t j = 0; j < width; ++j) (*c)[j].Add(row[j]);
    }
  }
  const std::vector<int64_t> finite(width, 0);
  return ObserveChannels(layer, kc, finite, vc, finite, tokens);
}

absl::Status KvStatsAccumulator::ObserveChannels(int layer, const std::vector<RangeStat>& k,
                                                 const std::vector<int64_t>& k_nonfinite,
                                                 const std::vector<RangeStat>& v,
                                                 const std::vector<int64_t>& v_nonfinite,
                                                 int64_t tokens) {
  if (layer < 0 || layer >= num_layers()) {
    return absl::InvalidArgumentError(absl::StrCat("observed layer ", layer, " but the model has ",
                                                   num_layers(), " layers"));
  }
  const size_t width = size_t(kv_heads_) * head_dim_;
  if (k.size() != width || v.size() != width || k_nonfinite.size() != width ||
      v_nonfinite.size() != width || tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layer ", layer, ": observed ", k.size(), " K and ", v.size(), " V channel ranges over ",
        tokens, " tokens, expected ", width, " (", kv_heads_, " kv heads x ", head_dim_, ")"));
  }
  for (auto [counts, tensor] : {std::pair{&k_nonfinite, "K"}, std::pair{&v_nonfinite, "V"}}) {
    for (size_t c = 0; c < width; ++c) {
      if ((*counts)[c] != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "calibration data of layer ", layer, " ", tensor, " holds ", (*counts)[c],
            " NaN/Inf values at kv head ", c / head_dim_, ", channel ", c % head_dim_,
            "; the model produced non-finite activations on the calibration text"));
      }
    }
  }
  KvLayerStats& stats = layers_[layer];
  for (auto [ranges, t] : {std::pair{&k, &stats.k}, std::pair{&v, &stats.v}}) {
    for (size_t c = 0; c < width; ++c) t->channels[c].Merge((*ranges)[c]);
    FoldChannels(*t, kv_heads_, head_dim_);
  }
  stats.tokens += tokens;
  return absl::OkStatus();
}

void FoldChannels(KvTensorStats& t, int kv_heads, int head_dim) {
  t.layer = RangeStat();
  t.heads.assign(kv_heads, RangeStat());
  for (int h = 0; h < kv_heads; ++h) {
    for (int d = 0; d < head_dim; ++d) t.heads[h].Merge(t.channels[size_t(h) * head_dim + d]);
    t.layer.Merge(t.heads[h]);
  }
}

absl::Status KvStatsAccumulator::CheckComplete() const {
  for (int l = 0; l < num_layers(); ++l) {
    if (layers_[l].tokens == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("calibration observed no K/V of layer ", l,
                       "; the runtime did not report that layer's cache writes"));
    }
  }
  return absl::OkStatus();
}

}  // namespace kvcc::passes
