// How a layer's KV cache is stored: the contract between the kv-quantize pass (which writes it
// as attributes of kv_cache_write) and every backend (which reads it back). K and V are stored
// independently (dtype and granularity each), so e.g. int8 K with int4 V is one scheme.
//
// Attributes on kv_cache_write:
//   cache_dtype  "f16" | "i8" | "i4" | "fp8e4m3"   K's storage (also the node's output dtype)
//   kv_scheme    "none" | "per_layer" | "per_head" | "per_channel" | "online" | "block_channel"
//                K's granularity
//   v_cache_dtype, v_kv_scheme   V's storage; absent: V is stored like K
//   k_zp k_scale   float lists of K's calibrated parameters: 1 entry (per_layer), kv_heads
//                  (per_head) or kv_heads * head_dim (per_channel, head-major); absent for
//                  "none" and "online" (online keeps per-token, per-head params in fp16 beside
//                  each token's values in the cache)
//   v_zp v_scale   the same for V
// Integer quantization (calibrated): q = clamp(round((f - zp) / scale), qmin, qmax),
// dequantization f = q * scale + zp, with [qmin, qmax] = [-128, 127] for i8, [-8, 7] for i4.
// fp8 (calibrated; zp = 0 per layer or head, the midpoint per channel): q = e4m3((f - zp) / scale)
// (ir/fp8_e4m3.h, saturating),
// f = float(q) * scale + zp.
// Online (i8/i4): scale = (max - min) / (2^bits - 1), zero = min, q = round((f - zero) / scale)
// in [0, 2^bits - 1], f = q * scale + zero.
// Block-channel (KIVI, i4, K only): the same online formula per channel over the block_size
// tokens of one cache block, its (scale, zero) pairs stored per (block, head, channel) in fp16.
// A block is quantized when its last slot is written; until then its rows stay in fp16 (the
// recent window), so attention reads the tokens of a session's unfilled block unquantized; a
// session's first block (the attention sink) is never quantized.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "ir/dtype.h"
#include "ir/node.h"

namespace kvcc::ir {

enum class KvGranularity { kNone, kPerLayer, kPerHead, kOnline, kPerChannel, kBlockChannel };

// Which half of the cache (K and V have separate storage and parameters).
enum class KvPart { kKey, kValue };

// How one part (K or V) is stored.
struct KvStorage {
  DType dtype = DType::kF16;
  KvGranularity granularity = KvGranularity::kNone;
  bool quantized() const { return granularity != KvGranularity::kNone; }
  bool online() const { return granularity == KvGranularity::kOnline; }
  bool block_channel() const { return granularity == KvGranularity::kBlockChannel; }
  // Parameters come from calibration (per_layer, per_head, per_channel).
  bool calibrated() const { return quantized() && !online() && !block_channel(); }
  bool operator==(const KvStorage& o) const {
    return dtype == o.dtype && granularity == o.granularity;
  }
  bool operator!=(const KvStorage& o) const { return !(*this == o); }
};

struct KvCacheScheme {
  DType dtype = DType::kF16;  // K
  KvGranularity granularity = KvGranularity::kNone;
  DType v_dtype = DType::kF16;  // V
  KvGranularity v_granularity = KvGranularity::kNone;
  std::vector<float> k_zp, k_scale, v_zp, v_scale;

  // Both parts stored as `storage`.
  static KvCacheScheme Uniform(KvStorage storage) {
    KvCacheScheme s;
    s.SetPart(KvPart::kKey, storage);
    s.SetPart(KvPart::kValue, storage);
    return s;
  }
  KvStorage Part(KvPart p) const {
    return p == KvPart::kKey ? KvStorage{dtype, granularity} : KvStorage{v_dtype, v_granularity};
  }
  void SetPart(KvPart p, KvStorage s) {
    (p == KvPart::kKey ? dtype : v_dtype) = s.dtype;
    (p == KvPart::kKey ? granularity : v_granularity) = s.granularity;
  }
  bool quantized() const { return Part(KvPart::kKey).quantized() || Part(KvPart::kValue).quantized(); }
  const std::vector<float>& Zps(KvPart p) const { return p == KvPart::kKey ? k_zp : v_zp; }
  const std::vector<float>& Scales(KvPart p) const { return p == KvPart::kKey ? k_scale : v_scale; }
  // zp/scale of channel `c` of kv head `h` of part `p` (per_layer entries are shared by all
  // heads, per_head ones by a head's channels).
  float Zp(KvPart p, int h, int c, int head_dim) const {
    return Zps(p)[ParamIndex(p, h, c, head_dim)];
  }
  float Scale(KvPart p, int h, int c, int head_dim) const {
    return Scales(p)[ParamIndex(p, h, c, head_dim)];
  }
  size_t ParamIndex(KvPart p, int h, int c, int head_dim) const {
    switch (Part(p).granularity) {
      case KvGranularity::kPerLayer: return 0;
      case KvGranularity::kPerChannel: return static_cast<size_t>(h) * head_dim + c;
      default: return static_cast<size_t>(h);
    }
  }
  // Per-head accessors of the per_layer and per_head schemes.
  float KZp(int h) const { return k_zp.size() == 1 ? k_zp[0] : k_zp[h]; }
  float KScale(int h) const { return k_scale.size() == 1 ? k_scale[0] : k_scale[h]; }
  float VZp(int h) const { return v_zp.size() == 1 ? v_zp[0] : v_zp[h]; }
  float VScale(int h) const { return v_scale.size() == 1 ? v_scale[0] : v_scale[h]; }
};

// The kv_scheme attribute spelling of `g` ("none", "per_layer", "per_head", "online",
// "per_channel", "block_channel").
const char* KvGranularityName(KvGranularity g);
// "i8/per_head", or "i8/per_head+i4/online" when V differs from K.
std::string KvCacheSchemeName(const KvCacheScheme& scheme);
// Entries each zp/scale list of a part needs: 1, kv_heads, kv_heads * head_dim; 0 when the part
// has no calibrated parameters.
size_t KvParamCount(KvStorage storage, int kv_heads, int head_dim);

// Reads the scheme from a kv_cache_write node, checking list lengths against its kv_heads and
// head_dim.
absl::StatusOr<KvCacheScheme> ReadKvCacheScheme(const Node& kv_cache_write);
// Writes the scheme's attributes onto a kv_cache_write node (its output dtype is the caller's).
void WriteKvCacheScheme(const KvCacheScheme& scheme, Node* kv_cache_write);

}  // namespace kvcc::ir
