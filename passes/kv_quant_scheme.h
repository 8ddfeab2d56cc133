// The named KV-cache quantization schemes kvcc offers (`--kv-quant NAME`, `--quant-policy 4`)
// and how each turns a layer's calibrated ranges into the ir::KvCacheScheme written onto its
// kv_cache_write node.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ir/kv_cache_scheme.h"

namespace kvcc::passes {

enum class KvQuantScheme {
  kNone,          // fp16 cache
  kInt8PerLayer,  // the seed's --quant-policy 4
  kInt8PerHead,
  kInt4PerHead,
  kInt8Online,    // LMDeploy >= 0.4: per token and kv head, params stored beside the values
  kInt4Online,
};

// "fp16", "int8-per-layer", "int8-per-head", "int4-per-head", "int8-online", "int4-online".
absl::string_view KvQuantSchemeName(KvQuantScheme scheme);
absl::StatusOr<KvQuantScheme> ParseKvQuantScheme(absl::string_view name);
std::vector<KvQuantScheme> AllKvQuantSchemes();
bool NeedsCalibration(KvQuantScheme scheme);

// The scheme a command's `--quant-policy` and `--kv-quant` select: policy 0 and no name ->
// fp16, policy 4 -> int8-per-layer, a name -> that scheme. A policy other than 0/4, an unknown
// name, or a name that contradicts policy 4 is an error.
absl::StatusOr<KvQuantScheme> ResolveKvQuantScheme(int quant_policy, absl::string_view kv_quant);

// Calibrated ranges of one layer, per kv head (per-layer ranges are their fold).
struct KvLayerRanges {
  std::vector<float> k_min, k_max, v_min, v_max;  // [kv_heads]
};

// The cache scheme of one layer. Calibrated schemes use ir::CalibratedParams:
// zp = (min+max)/2, scale = (max-min)/255 (int8) or /15 (int4), over the layer's (per_layer) or
// the head's (per_head) range; `ranges` must then hold kv_heads entries per list.
absl::StatusOr<ir::KvCacheScheme> MakeLayerScheme(KvQuantScheme scheme,
                                                  const KvLayerRanges* ranges, int kv_heads);

}  // namespace kvcc::passes
