// How a layer's KV cache is stored: the contract between the kv-quantize pass (which writes it
// as attributes of kv_cache_write) and every backend (which reads it back).
//
// Attributes on kv_cache_write:
//   cache_dtype  "f16" | "i8" | "i4"          (also the dtype of the node's output value)
//   kv_scheme    "none" | "per_layer" | "per_head" | "online"
//   k_zp k_scale v_zp v_scale  float lists: 1 entry (per_layer) or kv_heads entries (per_head);
//                absent for "none" and "online" (online keeps per-token, per-head params in fp16
//                beside each token's values in the cache).
// Quantization (calibrated schemes): q = clamp(round((f - zp) / scale), qmin, qmax),
// dequantization f = q * scale + zp, with [qmin, qmax] = [-128, 127] for i8, [-8, 7] for i4.
// Online: scale = (max - min) / (2^bits - 1), zero = min, q = round((f - zero) / scale) in
// [0, 2^bits - 1], f = q * scale + zero.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "ir/dtype.h"
#include "ir/node.h"

namespace kvcc::ir {

enum class KvGranularity { kNone, kPerLayer, kPerHead, kOnline };

struct KvCacheScheme {
  DType dtype = DType::kF16;
  KvGranularity granularity = KvGranularity::kNone;
  std::vector<float> k_zp, k_scale, v_zp, v_scale;

  bool quantized() const { return granularity != KvGranularity::kNone; }
  // zp/scale of kv head `h` (per_layer entries are shared by all heads).
  float KZp(int h) const { return k_zp.size() == 1 ? k_zp[0] : k_zp[h]; }
  float KScale(int h) const { return k_scale.size() == 1 ? k_scale[0] : k_scale[h]; }
  float VZp(int h) const { return v_zp.size() == 1 ? v_zp[0] : v_zp[h]; }
  float VScale(int h) const { return v_scale.size() == 1 ? v_scale[0] : v_scale[h]; }
};

// The kv_scheme attribute spelling of `g` ("none", "per_layer", "per_head", "online").
const char* KvGranularityName(KvGranularity g);

// Reads the scheme from a kv_cache_write node, checking list lengths against its kv_heads.
absl::StatusOr<KvCacheScheme> ReadKvCacheScheme(const Node& kv_cache_write);
// Writes the scheme's attributes onto a kv_cache_write node (its output dtype is the caller's).
void WriteKvCacheScheme(const KvCacheScheme& scheme, Node* kv_cache_write);

}  // namespace kvcc::ir
