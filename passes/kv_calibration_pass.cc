#include "passes/kv_calibration_pass.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"

namespace kvcc::passes {
namespace {

constexpr const char* kKeys[] = {"calib_k_min", "calib_k_max", "calib_v_min", "calib_v_max"};
constexpr const char* kChannelKeys[] = {"calib_k_ch_min", "calib_k_ch_max", "calib_v_ch_min",
                                        "calib_v_ch_max"};

std::vector<double> Mins(const std::vector<RangeStat>& rs) {
  std::vector<double> out;
  for (const RangeStat& r : rs) out.push_back(r.min);
  return out;
}
std::vector<double> Maxs(const std::vector<RangeStat>& rs) {
  std::vector<double> out;
  for (const RangeStat& r : rs) out.push_back(r.max);
  return out;
}

}  // namespace

absl::Status KvCalibrationPass::Run(ir::Module& module) {
  KVCC_RETURN_IF_ERROR(CheckKvParamsMatch(params_, module, source_));
  std::vector<int> seen(params_.layers.size(), 0);
  for (const auto& node : module.graph.nodes()) {
    if (node->op != ir::op::kKvCacheWrite) continue;
    KVCC_ASSIGN_OR_RETURN(auto layer, node->Int("layer"));
    if (layer < 0 || layer >= static_cast<int64_t>(params_.layers.size())) {
      return absl::InvalidArgumentError(absl::StrCat("node '", node->name, "' writes layer ",
                                                     layer, " but ", source_, " holds ",
                                                     params_.layers.size(), " layers"));
    }
    if (node->IntOr("kv_heads", -1) != params_.model.num_kv_heads ||
        node->IntOr("head_dim", -1) != params_.model.head_dim) {
      return absl::InvalidArgumentError(absl::StrCat(
          "node '", node->name, "' has ", node->IntOr("kv_heads", -1), " kv heads x ",
          node->IntOr("head_dim", -1), " but ", source_, " was calibrated for ",
          params_.model.num_kv_heads, " x ", params_.model.head_dim));
    }
    const KvLayerStats& stats = params_.layers[layer];
    node->attrs["calib_k_min"] = Mins(stats.k.heads);
    node->attrs["calib_k_max"] = Maxs(stats.k.heads);
    node->attrs["calib_v_min"] = Mins(stats.v.heads);
    node->attrs["calib_v_max"] = Maxs(stats.v.heads);
    if (per_channel_) {
      node->attrs["calib_k_ch_min"] = Mins(stats.k.channels);
      node->attrs["calib_k_ch_max"] = Maxs(stats.k.channels);
      node->attrs["calib_v_ch_min"] = Mins(stats.v.channels);
      node->attrs["calib_v_ch_max"] = Maxs(stats.v.channels);
    }
    ++seen[layer];
  }
  for (size_t l = 0; l < seen.size(); ++l) {
    if (seen[l] != 1) {
      return absl::InvalidArgumentError(absl::StrCat("the graph has ", seen[l],
                                                     " kv_cache_write nodes for layer ", l,
                                                     ", expected exactly one"));
    }
  }
  const KvCalibrationInfo& c = params_.calibration;
  module.metadata["kv_calibration"] = absl::StrCat("dataset=", c.dataset, " samples=", c.samples,
                                                   " seqlen=", c.seqlen, " seed=", c.seed);
  return absl::OkStatus();
}

absl::StatusOr<KvLayerRanges> ReadCalibratedRanges(const ir::Node& node) {
  bool any = false;
  for (const char* key : kKeys) any = any || node.Has(key);
  if (!any) {
    return absl::NotFoundError(absl::StrCat("node '", node.name, "' carries no calibration"));
  }
  KvLayerRanges r;
  const int64_t heads = node.IntOr("kv_heads", 0);
  const int64_t channels = heads * node.IntOr("head_dim", 0);
  // Reads the four lists of `keys` (each of `want` finite entries) into `lists`.
  auto read = [&](const char* const (&keys)[4], int64_t want,
                  std::vector<float>* const (&lists)[4]) -> absl::Status {
    for (int i = 0; i < 4; ++i) {
      KVCC_ASSIGN_OR_RETURN(auto values, node.Floats(keys[i]));
      if (static_cast<int64_t>(values.size()) != want) {
        return absl::InvalidArgumentError(absl::StrCat("node '", node.name, "': ", keys[i],
                                                       " has ", values.size(),
                                                       " entries, expected ", want));
      }
      for (double v : values) {
        if (!std::isfinite(v)) {
          return absl::InvalidArgumentError(
              absl::StrCat("node '", node.name, "': ", keys[i], " holds ", v));
        }
        lists[i]->push_back(static_cast<float>(v));
      }
    }
    for (int64_t i = 0; i < want; ++i) {
      if ((*lists[0])[i] > (*lists[1])[i] || (*lists[2])[i] > (*lists[3])[i]) {
        return absl::InvalidArgumentError(absl::StrCat("node '", node.name, "': calibrated min > max at ",
                                                       keys[0], "[", i, "]"));
      }
    }
    return absl::OkStatus();
  };
  KVCC_RETURN_IF_ERROR(read(kKeys, heads, {&r.k_min, &r.k_max, &r.v_min, &r.v_max}));
  if (node.Has(kChannelKeys[0])) {
    KVCC_RETURN_IF_ERROR(
        read(kChannelKeys, channels, {&r.k_ch_min, &r.k_ch_max, &r.v_ch_min, &r.v_ch_max}));
  }
  return r;
}

}  // namespace kvcc::passes
