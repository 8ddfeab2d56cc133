#include "ir/kv_cache_scheme.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"

namespace kvcc::ir {
namespace {
constexpr const char* kNames[] = {"none",   "per_layer",  "per_head",
                                  "online", "per_channel", "block_channel"};
constexpr int kNumNames = 6;

std::vector<float> ToFloats(const std::vector<double>& v) { return {v.begin(), v.end()}; }
std::vector<double> ToDoubles(const std::vector<float>& v) { return {v.begin(), v.end()}; }

absl::StatusOr<KvGranularity> ParseGranularity(const Node& node, const std::string& name) {
  for (int i = 0; i < kNumNames; ++i) {
    if (name == kNames[i]) return static_cast<KvGranularity>(i);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("node '", node.name, "': unknown kv_scheme '", name, "'"));
}

// One part's storage from its two attributes, checked for a consistent dtype/granularity pair.
absl::StatusOr<KvStorage> ReadStorage(const Node& node, const char* dtype_key,
                                      const char* scheme_key, KvStorage fallback) {
  KvStorage s = fallback;
  if (node.Has(dtype_key)) {
    KVCC_ASSIGN_OR_RETURN(s.dtype, ParseDType(node.StrOr(dtype_key, "f16")));
  }
  if (node.Has(scheme_key)) {
    KVCC_ASSIGN_OR_RETURN(s.granularity, ParseGranularity(node, node.StrOr(scheme_key, "none")));
  }
  if (!s.quantized()) {
    if (s.dtype != DType::kF16 && s.dtype != DType::kF32) {
      return absl::InvalidArgumentError(absl::StrCat("node '", node.name, "': ", dtype_key, " ",
                                                     DTypeName(s.dtype), " needs a ", scheme_key));
    }
    return s;
  }
  if (s.dtype == DType::kFP8E4M3) {
    if (s.online()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "node '", node.name, "': an fp8e4m3 cache is calibrated (per_layer, per_head or "
          "per_channel), not online"));
    }
    return s;
  }
  if (s.block_channel() && (s.dtype != DType::kI4 || std::string(scheme_key) != "kv_scheme")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "node '", node.name, "': block_channel (KIVI) stores K only, as i4; ", scheme_key,
        " block_channel with ", dtype_key, " ", DTypeName(s.dtype), " is not supported"));
  }
  if (s.dtype != DType::kI8 && s.dtype != DType::kI4) {
    return absl::InvalidArgumentError(
        absl::StrCat("node '", node.name, "': ", scheme_key, " ", KvGranularityName(s.granularity),
                     " needs ", dtype_key, " i8, i4 or fp8e4m3"));
  }
  return s;
}

}  // namespace

const char* KvGranularityName(KvGranularity g) {
  const int i = static_cast<int>(g);
  return i >= 0 && i < kNumNames ? kNames[i] : "?";
}

std::string KvCacheSchemeName(const KvCacheScheme& s) {
  auto one = [](KvStorage p) {
    return absl::StrCat(DTypeName(p.dtype), "/", KvGranularityName(p.granularity));
  };
  const KvStorage k = s.Part(KvPart::kKey), v = s.Part(KvPart::kValue);
  return k == v ? one(k) : absl::StrCat(one(k), "+", one(v));
}

size_t KvParamCount(KvStorage storage, int kv_heads, int head_dim) {
  switch (storage.granularity) {
    case KvGranularity::kPerLayer: return 1;
    case KvGranularity::kPerHead: return static_cast<size_t>(kv_heads);
    case KvGranularity::kPerChannel: return static_cast<size_t>(kv_heads) * head_dim;
    default: return 0;
  }
}

absl::StatusOr<KvCacheScheme> ReadKvCacheScheme(const Node& node) {
  if (node.op != op::kKvCacheWrite) {
    return absl::InvalidArgumentError(
        absl::StrCat("node '", node.name, "' is ", node.op, ", not kv_cache_write"));
  }
  KvCacheScheme s;
  KVCC_ASSIGN_OR_RETURN(KvStorage k, ReadStorage(node, "cache_dtype", "kv_scheme", KvStorage{}));
  KVCC_ASSIGN_OR_RETURN(KvStorage v, ReadStorage(node, "v_cache_dtype", "v_kv_scheme", k));
  s.SetPart(KvPart::kKey, k);
  s.SetPart(KvPart::kValue, v);
  const int64_t kv_heads = node.IntOr("kv_heads", 0);
  const int64_t head_dim = node.IntOr("head_dim", 0);
  if (kv_heads < 0 || kv_heads > 1 << 16 || head_dim < 0 || head_dim > 1 << 16) {
    return absl::InvalidArgumentError(absl::StrCat("node '", node.name, "': kv_heads ", kv_heads,
                                                   " x head_dim ", head_dim, " is out of range"));
  }
  struct ListKeys {
    KvPart part;
    const char* zp;
    const char* scale;
    std::vector<float>* zps;
    std::vector<float>* scales;
  };
  const ListKeys parts[] = {{KvPart::kKey, "k_zp", "k_scale", &s.k_zp, &s.k_scale},
                            {KvPart::kValue, "v_zp", "v_scale", &s.v_zp, &s.v_scale}};
  for (const ListKeys& p : parts) {
    const KvStorage storage = s.Part(p.part);
    if (!storage.calibrated()) continue;
    const size_t want =
        KvParamCount(storage, static_cast<int>(kv_heads), static_cast<int>(head_dim));
    for (const char* key : {p.zp, p.scale}) {
      KVCC_ASSIGN_OR_RETURN(auto list, node.Floats(key));
      if (list.size() != want || want == 0) {
        return absl::InvalidArgumentError(absl::StrCat("node '", node.name, "': ", key, " has ",
                                                       list.size(), " entries, expected ", want));
      }
      const bool is_scale = key == p.scale;
      // Per-layer and per-head fp8 grids are symmetric about 0; per-channel ones are centred
      // on each channel's midpoint.
      const bool zero_zp = storage.dtype == DType::kFP8E4M3 && !is_scale &&
                           storage.granularity != KvGranularity::kPerChannel;
      for (double v : list) {
        if (!std::isfinite(v) || (is_scale && v <= 0) || (zero_zp && v != 0)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "node '", node.name, "': ", key, " holds an invalid value ", v,
              zero_zp ? " (a per-layer or per-head fp8 cache has zp 0)" : ""));
        }
      }
      *(is_scale ? p.scales : p.zps) = ToFloats(list);
    }
  }
  return s;
}

void WriteKvCacheScheme(const KvCacheScheme& s, Node* node) {
  const KvStorage k = s.Part(KvPart::kKey), v = s.Part(KvPart::kValue);
  node->attrs["cache_dtype"] = std::string(DTypeName(k.dtype));
  node->attrs["kv_scheme"] = std::string(KvGranularityName(k.granularity));
  for (const char* key : {"k_zp", "k_scale", "v_zp", "v_scale", "v_cache_dtype", "v_kv_scheme"}) {
    node->attrs.erase(key);
  }
  if (v != k) {
    node->attrs["v_cache_dtype"] = std::string(DTypeName(v.dtype));
    node->attrs["v_kv_scheme"] = std::string(KvGranularityName(v.granularity));
  }
  if (k.calibrated()) {
    node->attrs["k_zp"] = ToDoubles(s.k_zp);
    node->attrs["k_scale"] = ToDoubles(s.k_scale);
  }
  if (v.calibrated()) {
    node->attrs["v_zp"] = ToDoubles(s.v_zp);
    node->attrs["v_scale"] = ToDoubles(s.v_scale);
  }
}

}  // namespace kvcc::ir
