// The named KV-cache quantization schemes kvcc offers (`--kv-quant NAME`, `--quant-policy 4`)
// and how each turns a layer's calibrated ranges into the ir::KvCacheScheme written onto its
// kv_cache_write node.
#pragma once

#include <optional>
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
  kK8V4,          // int8 K per head (calibrated), int4 V online
  kK8V4Online,    // int8 K, int4 V, both online
  kFp8PerTensor,  // fp8 e4m3, one scale per layer for K and one for V (absmax / 448)
  kFp8PerHead,
  kInt4KChannel,  // int4 K per channel (calibrated, KIVI-style static), int4 V online
  kInt4PerHeadClip,  // int4 per head over 0.6 of the calibrated range (clipping the outliers)
  kInt4Kivi,      // KIVI: int4 K per channel over each cache block (unfilled block in fp16),
                  // int4 V online
  kFp8KChannel,   // fp8 e4m3 K per channel about the channel's midpoint, fp8 V per head
};

// "fp16", "int8-per-layer", "int8-per-head", "int4-per-head", "int8-online", "int4-online",
// "k8v4", "k8v4-online", "fp8-per-tensor", "fp8-per-head", "int4-kchannel", "int4-per-head-clip",
// "int4-kivi", "fp8-kchannel".
absl::string_view KvQuantSchemeName(KvQuantScheme scheme);
absl::StatusOr<KvQuantScheme> ParseKvQuantScheme(absl::string_view name);
std::vector<KvQuantScheme> AllKvQuantSchemes();
bool NeedsCalibration(KvQuantScheme scheme);
// Some part of the scheme has per-channel parameters (kv-calibrate must then annotate the
// per-channel ranges too).
bool NeedsChannelRanges(KvQuantScheme scheme);
// How the scheme stores K and V.
ir::KvStorage SchemeStorage(KvQuantScheme scheme, ir::KvPart part);

// The scheme a command's `--quant-policy` and `--kv-quant` select: policy 0 and no name ->
// fp16, policy 4 -> int8-per-layer, a name -> that scheme. A policy other than 0/4, an unknown
// name, or a name that contradicts policy 4 is an error.
absl::StatusOr<KvQuantScheme> ResolveKvQuantScheme(int quant_policy, absl::string_view kv_quant);

// `--kv-quant-part`: "" -> both parts (nullopt), "k" / "v" -> that part alone. With a part,
// `scheme` must quantize something (not fp16).
absl::StatusOr<std::optional<ir::KvPart>> ParseKvQuantPart(absl::string_view part,
                                                          KvQuantScheme scheme);

// Calibrated ranges of one layer, per kv head (per-layer ranges are their fold), and per
// channel when kv-calibrate was asked for them.
struct KvLayerRanges {
  std::vector<float> k_min, k_max, v_min, v_max;  // [kv_heads]
  std::vector<float> k_ch_min, k_ch_max, v_ch_min, v_ch_max;  // [kv_heads * head_dim] or empty
};

// The cache scheme of one layer. Calibrated integer parts use ir::CalibratedParams:
// zp = (min+max)/2, scale = (max-min)/255 (int8) or /15 (int4), over the layer's (per_layer),
// the head's (per_head) or the channel's (per_channel) range; fp8 parts ir::Fp8Params
// (zp 0, scale = max|x| / 448; per head: the layer's scale over a power of two,
// ir::Fp8HeadScale, so per-head never rounds worse than per-tensor), except per-channel fp8
// parts (fp8-kchannel), which are centred:
// ir::Fp8CenteredParams (zp = the channel's midpoint, scale = kFp8ChannelRoom x half its width
// / 448). int4-per-head-clip shrinks each head's range about its midpoint
// to kInt4HeadClip of its width before the same formula; int8-per-head widens each head's range
// by kInt8HeadHeadroom of its width beyond each end. `ranges` must then hold kv_heads entries
// per list (and kv_heads * head_dim per channel list for per-channel parts).
// The clipped fraction of int4-per-head-clip: the best of 0.5-1.0 by perplexity on PTB valid
// windows outside the calibration ones (docs/accuracy.md).
inline constexpr float kInt4HeadClip = 0.6f;
// The headroom of int8-per-head: text unlike the calibration's reaches beyond a head's
// calibrated range (wiki-gutenberg-29M's held-out texts by 10-63 per-head steps on PTB's
// ranges), and a per-head grid clips those values where the layer's wider one does not. Each
// 1% of the width costs every value a 2% coarser step; 5% keeps the mean KL at or below the
// per-layer grid's on the calibration's own text too (docs/accuracy.md).
inline constexpr float kInt8HeadHeadroom = 0.05f;
// The room of fp8-kchannel's centred grid: e4m3's relative precision does not depend on the
// scale, and a power of two moves every value by whole binades, so x4 stores each value within
// the calibrated range with exactly the rounding of x1 while text unlike the calibration's may
// reach 4x the channel's half-width from its midpoint before it saturates.
inline constexpr float kFp8ChannelRoom = 4.0f;

absl::StatusOr<ir::KvCacheScheme> MakeLayerScheme(KvQuantScheme scheme,
                                                  const KvLayerRanges* ranges, int kv_heads,
                                                  int head_dim);

}  // namespace kvcc::passes
