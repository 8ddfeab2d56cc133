#include "ir/kv_cache_scheme.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"

namespace kvcc::ir {
namespace {
constexpr const char* kNames[] = {"none", "per_layer", "per_head", "online"};

std::vector<float> ToFloats(const std::vector<double>& v) { return {v.begin(), v.end()}; }
std::vector<double> ToDoubles(const std::vector<float>& v) { return {v.begin(), v.end()}; }
}  // namespace

const char* KvGranularityName(KvGranularity g) {
  const int i = static_cast<int>(g);
  return i >= 0 && i < 4 ? kNames[i] : "?";
}

absl::StatusOr<KvCacheScheme> ReadKvCacheScheme(const Node& node) {
  if (node.op != op::kKvCacheWrite) {
    return absl::InvalidArgumentError(
        absl::StrCat("node '", node.name, "' is ", node.op, ", not kv_cache_write"));
  }
  KvCacheScheme s;
  auto dtype = ParseDType(node.StrOr("cache_dtype", "f16"));
  if (!dtype.ok()) return dtype.status();
  s.dtype = *dtype;
  std::string name = node.StrOr("kv_scheme", "none");
  bool found = false;
  for (int i = 0; i < 4; ++i) {
    if (name == kNames[i]) {
      s.granularity = static_cast<KvGranularity>(i);
      found = true;
    }
  }
  if (!found) {
    return absl::InvalidArgumentError(absl::StrCat("node '", node.name, "': unknown kv_scheme '",
                                                   name, "'"));
  }
  if (s.granularity == KvGranularity::kNone) {
    if (s.dtype != DType::kF16 && s.dtype != DType::kF32) {
      return absl::InvalidArgumentError(absl::StrCat(
          "node '", node.name, "': cache_dtype ", DTypeName(s.dtype), " needs a kv_scheme"));
    }
    return s;
  }
  if (s.dtype != DType::kI8 && s.dtype != DType::kI4) {
    return absl::InvalidArgumentError(absl::StrCat("node '", node.name, "': kv_scheme ", name,
                                                   " needs cache_dtype i8 or i4"));
  }
  if (s.granularity == KvGranularity::kOnline) return s;
  const size_t want = s.granularity == KvGranularity::kPerLayer
                          ? 1
                          : static_cast<size_t>(node.IntOr("kv_heads", 0));
  for (const char* key : {"k_zp", "k_scale", "v_zp", "v_scale"}) {
    KVCC_ASSIGN_OR_RETURN(auto list, node.Floats(key));
    if (list.size() != want) {
      return absl::InvalidArgumentError(absl::StrCat("node '", node.name, "': ", key, " has ",
                                                     list.size(), " entries, expected ", want));
    }
    for (double v : list) {
      if (!std::isfinite(v) || (std::string(key).find("scale") != std::string::npos && v <= 0)) {
        return absl::InvalidArgumentError(absl::StrCat("node '", node.name, "': ", key,
                                                       " holds an invalid value ", v));
      }
    }
  }
  s.k_zp = ToFloats(*node.Floats("k_zp"));
  s.k_scale = ToFloats(*node.Floats("k_scale"));
  s.v_zp = ToFloats(*node.Floats("v_zp"));
  s.v_scale = ToFloats(*node.Floats("v_scale"));
  return s;
}

void WriteKvCacheScheme(const KvCacheScheme& s, Node* node) {
  node->attrs["cache_dtype"] = std::string(DTypeName(s.dtype));
  node->attrs["kv_scheme"] = std::string(KvGranularityName(s.granularity));
  for (const char* key : {"k_zp", "k_scale", "v_zp", "v_scale"}) node->attrs.erase(key);
  if (s.granularity == KvGranularity::kPerLayer || s.granularity == KvGranularity::kPerHead) {
    node->attrs["k_zp"] = ToDoubles(s.k_zp);
    node->attrs["k_scale"] = ToDoubles(s.k_scale);
    node->attrs["v_zp"] = ToDoubles(s.v_zp);
    node->attrs["v_scale"] = ToDoubles(s.v_scale);
  }
}

}  // namespace kvcc::ir
