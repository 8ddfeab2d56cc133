// The KV-cache calibration parameter file (kv_params.json): versioned JSON holding which model
// and text it was calibrated for, the raw statistics (per layer, per kv head, per channel) and
// the derived per-layer int8 zp/scale. `kvcc calibrate` writes it; the kv-quantize pass reads it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/module.h"
#include "passes/kv_stats.h"

namespace kvcc::passes {

// 2 added model.weights_fingerprint.
inline constexpr int kKvParamsVersion = 2;
inline constexpr char kKvParamsFileName[] = "kv_params.json";

// What the parameters are valid for. The config fingerprint hashes every config field that
// shapes K and V (dimensions, rotary settings, norm epsilon), so a file made for another model
// is rejected even when the layer/head counts happen to agree; the weights fingerprint hashes
// the weights' names, types and a sample of their bytes, so a file made for other weights of
// the same config (another fine-tune, a re-import of a changed checkpoint) is rejected too.
struct KvModelIdentity {
  std::string architecture;
  int64_t num_layers = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  std::string config_fingerprint;
  std::string weights_fingerprint;
  bool operator==(const KvModelIdentity& o) const {
    return architecture == o.architecture && num_layers == o.num_layers &&
           num_kv_heads == o.num_kv_heads && head_dim == o.head_dim &&
           config_fingerprint == o.config_fingerprint &&
           weights_fingerprint == o.weights_fingerprint;
  }
};
KvModelIdentity IdentityOf(const ir::Module& module);
// "xxh64:<hex>" of each weight's name, dtype and shape and its bytes: all of them up to 64 KiB,
// else 256 blocks of 256 bytes spread evenly (cheap on a large model, and different weights of
// one config differ everywhere).
std::string WeightsFingerprint(const ir::Graph& graph);

struct KvCalibrationInfo {
  std::string dataset;  // ptb | wikitext2 | tinystories | a file path
  int64_t samples = 0;  // windows actually run
  int64_t seqlen = 0;
  int64_t seed = 0;
  bool operator==(const KvCalibrationInfo& o) const {
    return dataset == o.dataset && samples == o.samples && seqlen == o.seqlen && seed == o.seed;
  }
};

struct KvParams {
  KvModelIdentity model;
  KvCalibrationInfo calibration;
  std::vector<KvLayerStats> layers;  // [num_layers]
};

// JSON text of the file; every float is written with the fewest digits that read back to the
// same float, so a round trip is exact.
std::string KvParamsToJson(const KvParams& params);
// Parses and checks a file's text (bounded: ir/json_reader.h): format name and version, shapes
// against the recorded identity, finite values within +-kMaxPlausibleKv, min <= max, not every
// range zero, per-layer/per-head ranges consistent with the channels, and the derived zp/scale
// consistent with min/max. `source` names the file in errors.
absl::StatusOr<KvParams> KvParamsFromJson(const std::string& json, const std::string& source);

// K and V of a LLaMA-family model stay far below this; a larger calibrated value is damage.
inline constexpr float kMaxPlausibleKv = 1e4f;

absl::Status WriteKvParams(const KvParams& params, const std::string& path);  // atomic
// Regular files only (a FIFO or a link to a device is refused), size-capped; NotFound when
// absent.
absl::StatusOr<KvParams> ReadKvParams(const std::string& path);
// The file's model identity must equal `module`'s (config and weights).
absl::Status CheckKvParamsMatch(const KvParams& params, const ir::Module& module,
                                const std::string& source);

// `dir`/kv_params.json
std::string KvParamsPath(const std::string& dir);

}  // namespace kvcc::passes
