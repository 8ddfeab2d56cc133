#include "passes/kv_quant_scheme.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ir/kv_quant.h"
#include "ir/status_macros.h"

namespace kvcc::passes {
namespace {

using ir::DType;
using ir::KvGranularity;
using ir::KvStorage;

struct SchemeInfo {
  KvQuantScheme scheme;
  const char* name;
  KvStorage k, v;
  float clip = 1.0f;  // fraction of the calibrated range the integer grid spans
  // Fraction of the calibrated range's width added beyond each of its ends (per-head integer
  // parts): room for values of unseen text outside the calibration's range.
  float headroom = 0.0f;
};
constexpr KvStorage kF16{DType::kF16, KvGranularity::kNone};
constexpr KvStorage kI8Layer{DType::kI8, KvGranularity::kPerLayer};
constexpr KvStorage kI8Head{DType::kI8, KvGranularity::kPerHead};
constexpr KvStorage kI4Head{DType::kI4, KvGranularity::kPerHead};
constexpr KvStorage kI8Online{DType::kI8, KvGranularity::kOnline};
constexpr KvStorage kI4Online{DType::kI4, KvGranularity::kOnline};
constexpr KvStorage kI4Channel{DType::kI4, KvGranularity::kPerChannel};
constexpr KvStorage kI4BlockChannel{DType::kI4, KvGranularity::kBlockChannel};
constexpr KvStorage kFp8Layer{DType::kFP8E4M3, KvGranularity::kPerLayer};
constexpr KvStorage kFp8Head{DType::kFP8E4M3, KvGranularity::kPerHead};
constexpr KvStorage kFp8Channel{DType::kFP8E4M3, KvGranularity::kPerChannel};
constexpr SchemeInfo kSchemes[] = {
    {KvQuantScheme::kNone, "fp16", kF16, kF16},
    {KvQuantScheme::kInt8PerLayer, "int8-per-layer", kI8Layer, kI8Layer},
    {KvQuantScheme::kInt8PerHead, "int8-per-head", kI8Head, kI8Head, 1.0f, kInt8HeadHeadroom},
    {KvQuantScheme::kInt4PerHead, "int4-per-head", kI4Head, kI4Head},
    {KvQuantScheme::kInt8Online, "int8-online", kI8Online, kI8Online},
    {KvQuantScheme::kInt4Online, "int4-online", kI4Online, kI4Online},
    {KvQuantScheme::kK8V4, "k8v4", kI8Head, kI4Online},
    {KvQuantScheme::kK8V4Online, "k8v4-online", kI8Online, kI4Online},
    {KvQuantScheme::kFp8PerTensor, "fp8-per-tensor", kFp8Layer, kFp8Layer},
    {KvQuantScheme::kFp8PerHead, "fp8-per-head", kFp8Head, kFp8Head},
    {KvQuantScheme::kInt4KChannel, "int4-kchannel", kI4Channel, kI4Online},
    {KvQuantScheme::kInt4PerHeadClip, "int4-per-head-clip", kI4Head, kI4Head, kInt4HeadClip},
    {KvQuantScheme::kInt4Kivi, "int4-kivi", kI4BlockChannel, kI4Online},
    {KvQuantScheme::kFp8KChannel, "fp8-kchannel", kFp8Channel, kFp8Head},
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
  return Info(scheme).k.calibrated() || Info(scheme).v.calibrated();
}

bool NeedsChannelRanges(KvQuantScheme scheme) {
  return Info(scheme).k.granularity == KvGranularity::kPerChannel ||
         Info(scheme).v.granularity == KvGranularity::kPerChannel;
}

ir::KvStorage SchemeStorage(KvQuantScheme scheme, ir::KvPart part) {
  return part == ir::KvPart::kKey ? Info(scheme).k : Info(scheme).v;
}

absl::StatusOr<ir::KvCacheScheme> MakeLayerScheme(KvQuantScheme scheme,
                                                  const KvLayerRanges* ranges, int kv_heads,
                                                  int head_dim) {
  const SchemeInfo& info = Info(scheme);
  ir::KvCacheScheme out;
  out.SetPart(ir::KvPart::kKey, info.k);
  out.SetPart(ir::KvPart::kValue, info.v);
  if (!NeedsCalibration(scheme)) return out;
  const size_t heads = static_cast<size_t>(kv_heads);
  if (ranges == nullptr || ranges->k_min.size() != heads || ranges->k_max.size() != heads ||
      ranges->v_min.size() != heads || ranges->v_max.size() != heads) {
    return absl::InvalidArgumentError(absl::StrCat("scheme ", info.name, " needs ", kv_heads,
                                                   " calibrated K/V ranges per layer"));
  }
  const size_t channels = heads * static_cast<size_t>(head_dim);
  if (NeedsChannelRanges(scheme) &&
      (head_dim <= 0 || ranges->k_ch_min.size() != channels || ranges->k_ch_max.size() != channels ||
       ranges->v_ch_min.size() != channels || ranges->v_ch_max.size() != channels)) {
    return absl::InvalidArgumentError(absl::StrCat("scheme ", info.name, " needs ", channels,
                                                   " calibrated per-channel K/V ranges per layer"));
  }
  auto add = [&](KvStorage storage, const std::vector<float>& mins,
                 const std::vector<float>& maxs, const std::vector<float>& ch_mins,
                 const std::vector<float>& ch_maxs, std::vector<float>* zps,
                 std::vector<float>* scales) {
    if (!storage.calibrated()) return;
    auto push = [&](float mn, float mx) {
      const float mid = (mn + mx) / 2.0f, half = (mx - mn) / 2.0f * info.clip;
      if (info.clip != 1.0f) mn = mid - half, mx = mid + half;
      if (info.headroom != 0.0f && storage.granularity == KvGranularity::kPerHead) {
        const float room = (mx - mn) * info.headroom;
        mn -= room, mx += room;
      }
      // fp8 per channel is centred: K's channels sit off zero (RoPE's slow pairs barely turn),
      // and e4m3's error grows with the stored magnitude, so storing x - midpoint shrinks it.
      ir::ZpScale p =
          storage.dtype != DType::kFP8E4M3
              ? ir::CalibratedParams(mn, mx, storage.dtype == DType::kI4 ? 15 : 255)
          : storage.granularity == KvGranularity::kPerChannel
              ? ir::Fp8CenteredParams(mn, mx, kFp8ChannelRoom)
              : ir::Fp8Params(std::max(std::fabs(mn), std::fabs(mx)));
      zps->push_back(p.zp);
      scales->push_back(p.scale);
    };
    switch (storage.granularity) {
      case KvGranularity::kPerLayer:
        push(*std::min_element(mins.begin(), mins.end()),
             *std::max_element(maxs.begin(), maxs.end()));
        break;
      case KvGranularity::kPerHead:
        if (storage.dtype == DType::kFP8E4M3) {
          // e4m3's relative precision does not depend on the scale, so a head's own absmax/448
          // only re-rolls where its values fall in their binades (measured: per-head KL 1-2%
          // above per-tensor's). The layer's scale divided by the largest power of two that
          // keeps the head's absmax finite stores every value as the per-layer grid does (the
          // same codes, shifted by whole binades) with fewer values in the subnormals: a
          // per-head grid that never costs more than the per-layer one.
          float layer = 0.0f;
          for (size_t h = 0; h < heads; ++h) {
            layer = std::max({layer, std::fabs(mins[h]), std::fabs(maxs[h])});
          }
          const ir::ZpScale whole = ir::Fp8Params(layer);
          for (size_t h = 0; h < heads; ++h) {
            const float head = std::max(std::fabs(mins[h]), std::fabs(maxs[h]));
            zps->push_back(0.0f);
            scales->push_back(ir::Fp8HeadScale(whole.scale, layer, head));
          }
          break;
        }
        for (size_t h = 0; h < heads; ++h) push(mins[h], maxs[h]);
        break;
      default:
        for (size_t c = 0; c < channels; ++c) push(ch_mins[c], ch_maxs[c]);
        break;
    }
  };
  add(info.k, ranges->k_min, ranges->k_max, ranges->k_ch_min, ranges->k_ch_max, &out.k_zp,
      &out.k_scale);
  add(info.v, ranges->v_min, ranges->v_max, ranges->v_ch_min, ranges->v_ch_max, &out.v_zp,
      &out.v_scale);
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

absl::StatusOr<std::optional<ir::KvPart>> ParseKvQuantPart(absl::string_view part,
                                                          KvQuantScheme scheme) {
  if (part.empty()) return std::optional<ir::KvPart>();
  if (part != "k" && part != "v") {
    return absl::InvalidArgumentError(
        absl::StrCat("--kv-quant-part ", part, ": expected k or v (the part to quantize)"));
  }
  if (scheme == KvQuantScheme::kNone) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--kv-quant-part ", part, " needs a quantized scheme (--kv-quant NAME or "
        "--quant-policy 4)"));
  }
  return part == "k" ? ir::KvPart::kKey : ir::KvPart::kValue;
}

}  // namespace kvcc::passes
