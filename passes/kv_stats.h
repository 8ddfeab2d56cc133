// Calibration statistics of the KV cache: what the calibration run observed of K (after rotary,
// exactly as written to the cache) and V, per layer, per kv head and per channel. NaN or Inf in
// the observed data is rejected, since a single one would poison every derived zp/scale.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace kvcc::passes {

// min, max and max |x| of a set of floats; empty until the first Add.
struct RangeStat {
  float min = std::numeric_limits<float>::infinity();
  float max = -std::numeric_limits<float>::infinity();
  float absmax = 0.0f;

  bool empty() const { return min > max; }
  void Add(float x) {
    if (x < min) min = x;
    if (x > max) max = x;
    float a = x < 0 ? -x : x;
    if (a > absmax) absmax = a;
  }
  void Merge(const RangeStat& o) {
    if (o.empty()) return;
    if (o.min < min) min = o.min;
    if (o.max > max) max = o.max;
    if (o.absmax > absmax) absmax = o.absmax;
  }
  bool operator==(const RangeStat& o) const {
    return min == o.min && max == o.max && absmax == o.absmax;
  }
};

// One tensor's (K's or V's) statistics of one layer.
struct KvTensorStats {
  RangeStat layer;                 // the seed's per-layer min/max
  std::vector<RangeStat> heads;     // [kv_heads]
  std::vector<RangeStat> channels;  // [kv_heads * head_dim], head-major
  bool operator==(const KvTensorStats& o) const {
    return layer == o.layer && heads == o.heads && channels == o.channels;
  }
};

struct KvLayerStats {
  KvTensorStats k, v;
  int64_t tokens = 0;  // tokens observed
  bool operator==(const KvLayerStats& o) const {
    return k == o.k && v == o.v && tokens == o.tokens;
  }
};

class KvStatsAccumulator {
 public:
  KvStatsAccumulator(int num_layers, int kv_heads, int head_dim);

  // One observation of `tokens` rows of K and V, each [tokens, kv_heads * head_dim] row-major.
  // Shapes must match the accumulator's; a NaN/Inf is an error naming layer, tensor, token,
  // head and channel, and leaves the statistics unchanged.
  absl::Status Observe(int layer, const float* k, const float* v, int64_t tokens, int kv_heads,
                       int head_dim);

  // The same observation already reduced per channel: `k` and `v` hold the channels' ranges
  // over `tokens` rows ([kv_heads * head_dim], head-major) and `*_nonfinite` how many of each
  // channel's values were NaN/Inf (any is an error naming layer, tensor, head and channel).
  absl::Status ObserveChannels(int layer, const std::vector<RangeStat>& k,
                               const std::vector<int64_t>& k_nonfinite,
                               const std::vector<RangeStat>& v,
                               const std::vector<int64_t>& v_nonfinite, int64_t tokens);

  // Every layer has seen at least one token.
  absl::Status CheckComplete() const;

  int num_layers() const { return static_cast<int>(layers_.size()); }
  int kv_heads() const { return kv_heads_; }
  int head_dim() const { return head_dim_; }
  const std::vector<KvLayerStats>& layers() const { return layers_; }

 private:
  int kv_heads_, head_dim_;
  std::vector<KvLayerStats> layers_;
};

// Per-head and per-layer ranges implied by per-channel ranges (head-major channels).
void FoldChannels(KvTensorStats& stats, int kv_heads, int head_dim);

}  // namespace kvcc::passes
