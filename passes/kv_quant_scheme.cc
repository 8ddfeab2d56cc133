#include "passes/kv_quant_scheme.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ir/kv_quant.h"
#include "ir/status_macros.h"

namespace kvcc::passes {
namespace {

struct SchemeInfo {
  KvQuantScheme scheme;
  const char* name;
  ir::DType dtype;
  ir::KvGranularity granularity;
};
constexpr SchemeInfo kSchemes[] = {
    {KvQuantScheme::kNone, "fp16", ir::DType::kF16, ir::KvGranularity::kNone},
    {KvQuantScheme::kInt8PerLayer, "int8-per-layer", ir::DType::kI8, ir::KvGranularity::kPerLayer},
    {KvQuantScheme::kInt8PerHead, "int8-per-head", ir::DType::kI8, ir::KvGranularity::kPerHead},
    {KvQuantScheme::kInt4PerHead, "int4-per-head", ir::DType::kI4, ir::KvGranularity::kPerHead},
    {KvQuantScheme::kInt8Online, "int8-online", ir::DType::kI8, ir::KvGranularity::kOnline},
    {KvQuantScheme::kInt4Online, "int4-online", ir::DType::kI4, ir::KvGranularity::kOnline},
};

const SchemeInfo& Info(KvQuantScheme s) {
  for (const SchemeInfo& i : kSchemes) {
    if (i.scheme == s) return i;
  }
  return kSchemes[0];
}

}  // namespace

absl::string_view KvQuantSchemeName(KvQuantScheme scheme) { return Info(scheme).name; }

absl::StatusOr<KvQuantScheme> ParseKvQuantScheme(absl::string_view name) {
  std::vector<std::string> names;
  for (const SchemeInfo& i : kSchemes) {
    if (name == i.name) return i.scheme;
    names.push_back(i.name);
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown KV-cache scheme '", name,
                                                 "'; expected one of ",
                                                 absl::StrJoin(names, ", ")));
}

std::vector<KvQuantScheme> AllKvQuantSchemes() {
  std::vector<KvQuantScheme> all;
  for (const SchemeInfo& i : kSchemes) all.push_back(i.scheme);
  return all;
}

bool NeedsCalibration(KvQuantScheme scheme) {
  const ir::KvGranularity g = Info(scheme).granularity;
  return g == ir::KvGranularity::kPerLayer || g == ir::KvGranularity::kPerHead;
}

absl::StatusOr<ir::KvCacheScheme> MakeLayerScheme(KvQuantScheme scheme,
                                                  const KvLayerRanges* ranges, int kv_heads) {
  const SchemeInfo& info = Info(scheme);
  ir::KvCacheScheme out;
  out.dtype = info.dtype;
  out.granularity = info.granularity;
  if (!NeedsCalibration(scheme)) return out;
  const size_t heads = static_cast<size_t>(kv_heads);
  if (ranges == nullptr || ranges->k_min.size() != heads || ranges->k_max.size() != heads ||
      ranges->v_min.size() != heads || ranges->v_max.size() != heads) {
    return absl::InvalidArgumentError(absl::StrCat("scheme ", info.name, " needs ", kv_heads,
                                                   " calibrated K/V ranges per layer"));
  }
  const int levels = info.dtype == ir::DType::kI4 ? 15 : 255;
  auto add = [&](const std::vector<float>& mins, const std::vector<float>& maxs,
                 std::vector<float>* zps, std::vector<float>* scales) {
    if (info.granularity == ir::KvGranularity::kPerLayer) {
      float mn = *std::min_element(mins.begin(), mins.end());
      float mx = *std::max_element(maxs.begin(), maxs.end());
      ir::ZpScale p = ir::CalibratedParams(mn, mx, levels);
      zps->push_back(p.zp);
      scales->push_back(p.scale);
      return;
    }
    for (size_t h = 0; h < heads; ++h) {
      ir::ZpScale p = ir::CalibratedParams(mins[h], maxs[h], levels);
      zps->push_back(p.zp);
      scales->push_back(p.scale);
    }
  };
  add(ranges->k_min, ranges->k_max, &out.k_zp, &out.k_scale);
  add(ranges->v_min, ranges->v_max, &out.v_zp, &out.v_scale);
  return out;
}

absl::StatusOr<KvQuantScheme> ResolveKvQuantScheme(int quant_policy,
                                                   absl::string_view kv_quant) {
  if (quant_policy != 0 && quant_policy != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--quant-policy ", quant_policy,
        " is not supported: 0 = fp16 cache, 4 = int8 per-layer (calibrated); use --kv-quant "
        "NAME for the other schemes"));
  }
  if (kv_quant.empty()) {
    return quant_policy == 4 ? KvQuantScheme::kInt8PerLayer : KvQuantScheme::kNone;
  }
  KVCC_ASSIGN_OR_RETURN(auto scheme, ParseKvQuantScheme(kv_quant));
  if (quant_policy == 4 && scheme != KvQuantScheme::kInt8PerLayer) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--quant-policy 4 (int8-per-layer) contradicts --kv-quant ", kv_quant, "; give one"));
  }
  return scheme;
}

}  // namespace kvcc::passes
