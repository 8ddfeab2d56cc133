#include "passes/kv_params.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "ir/atomic_file.h"
#include "ir/file_read.h"
#include "ir/json_reader.h"
#include "ir/kv_quant.h"
#include "ir/status_macros.h"
#include "ir/xxhash64.h"

namespace kvcc::passes {
namespace {

using Json = nlohmann::ordered_json;  // written in this key order
using ir::JsonReader;
constexpr char kFormat[] = "kvcc-kv-params";
// The file nests top > layers > layer > k > per_channel > min; a deeper one is not ours.
constexpr int kMaxDepth = 8;
// 32 layers x 8 kv heads x 128 channels take ~2 MB; the cap leaves room for far larger models.
constexpr int64_t kMaxFileBytes = int64_t{1} << 28;
// Bounds that keep products of counts far from int64 overflow.
constexpr int64_t kMaxLayers = 1 << 12;
constexpr int64_t kMaxKvHeads = 1 << 10;
constexpr int64_t kMaxHeadDim = 1 << 12;

// The shortest decimal that reads back as the same float, as a double for the JSON writer.
double ShortFloat(float f) {
  char buf[48];
  for (int digits = 6; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, static_cast<double>(f));
    double d = std::strtod(buf, nullptr);
    if (static_cast<float>(d) == f) return d;
  }
  return f;
}

Json RangeToJson(const RangeStat& r) {
  return Json{{"min", ShortFloat(r.min)}, {"max", ShortFloat(r.max)},
              {"absmax", ShortFloat(r.absmax)}};
}

Json RangesToJson(const std::vector<RangeStat>& rs) {
  Json mins = Json::array(), maxs = Json::array(), abss = Json::array();
  for (const RangeStat& r : rs) {
    mins.push_back(ShortFloat(r.min));
    maxs.push_back(ShortFloat(r.max));
    abss.push_back(ShortFloat(r.absmax));
  }
  return Json{{"min", mins}, {"max", maxs}, {"absmax", abss}};
}

Json TensorToJson(const KvTensorStats& t) {
  Json j = RangeToJson(t.layer);
  ir::ZpScale p = ir::CalibratedParams(t.layer.min, t.layer.max, 255);
  j["zp"] = ShortFloat(p.zp);
  j["scale"] = ShortFloat(p.scale);
  j["per_head"] = RangesToJson(t.heads);
  j["per_channel"] = RangesToJson(t.channels);
  return j;
}

// Parsing helpers over the bounded parser's value; the caller catches nlohmann's exceptions for
// wrong JSON types and absent keys, these check the values.
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  absl::Status Error(const std::string& where, const std::string& what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("KV parameter file ", source_, ": ", where, ": ", what,
                     " (re-run `kvcc calibrate` to regenerate it)"));
  }
  // A JsonReader's error (naming the key and value) with the fix appended.
  absl::Status Wrap(const absl::Status& s) const {
    return absl::InvalidArgumentError(
        absl::StrCat("KV parameter file ", s.message(), " (re-run `kvcc calibrate` to regenerate it)"));
  }

  absl::StatusOr<float> Float(const ir::Json& j, const std::string& where) const {
    if (!j.is_number()) return Error(where, "expected a number");
    double d = j.get<double>();
    float f = static_cast<float>(d);
    if (!std::isfinite(d) || !std::isfinite(f)) return Error(where, "not a finite float");
    if (std::fabs(f) > kMaxPlausibleKv) {
      return Error(where, absl::StrCat(f, " is beyond +-", kMaxPlausibleKv,
                                       ", implausible for a K or V activation"));
    }
    return f;
  }

  absl::StatusOr<RangeStat> Range(const ir::Json& min, const ir::Json& max, const ir::Json& absmax,
                                  const std::string& where) const {
    RangeStat r;
    KVCC_ASSIGN_OR_RETURN(r.min, Float(min, where + ".min"));
    KVCC_ASSIGN_OR_RETURN(r.max, Float(max, where + ".max"));
    KVCC_ASSIGN_OR_RETURN(r.absmax, Float(absmax, where + ".absmax"));
    if (r.min > r.max) return Error(where, absl::StrCat("min ", r.min, " > max ", r.max));
    if (r.absmax != std::max(std::fabs(r.min), std::fabs(r.max))) {
      return Error(where, absl::StrCat("absmax ", r.absmax, " is not max(|min|, |max|)"));
    }
    return r;
  }

  absl::StatusOr<std::vector<RangeStat>> Ranges(const ir::Json& j, size_t want,
                                                const std::string& where) const {
    if (!j.is_object()) return Error(where, "expected an object");
    const ir::Json& mins = j.at("min");
    const ir::Json& maxs = j.at("max");
    const ir::Json& abss = j.at("absmax");
    for (const ir::Json* a : {&mins, &maxs, &abss}) {
      if (!a->is_array() || a->size() != want) {
        return Error(where, absl::StrCat("expected arrays of ", want, " entries, got ",
                                         a->is_array() ? a->size() : 0));
      }
    }
    std::vector<RangeStat> out(want);
    for (size_t i = 0; i < want; ++i) {
      KVCC_ASSIGN_OR_RETURN(out[i],
                            Range(mins[i], maxs[i], abss[i], absl::StrCat(where, "[", i, "]")));
    }
    return out;
  }

  absl::StatusOr<KvTensorStats> Tensor(const ir::Json& j, int64_t kv_heads, int64_t head_dim,
                                       const std::string& where) const {
    if (!j.is_object()) return Error(where, "expected an object");
    KvTensorStats t;
    KVCC_ASSIGN_OR_RETURN(RangeStat layer, Range(j.at("min"), j.at("max"), j.at("absmax"), where));
    KVCC_ASSIGN_OR_RETURN(std::vector<RangeStat> heads,
                          Ranges(j.at("per_head"), kv_heads, where + ".per_head"));
    KVCC_ASSIGN_OR_RETURN(t.channels,
                          Ranges(j.at("per_channel"), kv_heads * head_dim, where + ".per_channel"));
    // The per-head and per-layer ranges are folds of the channels; a disagreement means the
    // file was edited by hand or damaged.
    FoldChannels(t, static_cast<int>(kv_heads), static_cast<int>(head_dim));
    if (!(t.layer == layer)) {
      return Error(where, "per-layer min/max/absmax disagree with the per-channel statistics");
    }
    if (t.heads != heads) {
      return Error(where, "per-head min/max/absmax disagree with the per-channel statistics");
    }
    KVCC_ASSIGN_OR_RETURN(float zp, Float(j.at("zp"), where + ".zp"));
    KVCC_ASSIGN_OR_RETURN(float scale, Float(j.at("scale"), where + ".scale"));
    ir::ZpScale p = ir::CalibratedParams(t.layer.min, t.layer.max, 255);
    if (zp != p.zp || scale != p.scale) {
      return Error(where, absl::StrCat("zp/scale ", zp, "/", scale,
                                       " disagree with min/max (expected ", p.zp, "/", p.scale,
                                       ")"));
    }
    return t;
  }

  absl::StatusOr<KvParams> Params(const ir::Json& j) const;

 private:
  std::string source_;
};

bool IsZero(const RangeStat& r) { return r.min == 0 && r.max == 0; }

absl::StatusOr<KvParams> Reader::Params(const ir::Json& j) const {
  if (!j.is_object()) return Error("top level", "not a JSON object");
  if (!j.contains("format") || j.at("format") != kFormat) {
    return Error("format", absl::StrCat("not a kvcc KV parameter file (expected \"format\": \"",
                                        kFormat, "\")"));
  }
  const ir::Json& version = j.at("version");
  if (!version.is_number_integer() || version.get<int64_t>() != kKvParamsVersion) {
    return Error("version", absl::StrCat("unsupported version ", ir::ShowJson(version),
                                         "; this kvcc reads version ", kKvParamsVersion));
  }
  KvParams p;
  const JsonReader top(j, source_);
  auto wrapped = [this](const absl::Status& s) { return Wrap(s); };
  auto model = top.Object("model");
  if (!model.ok()) return wrapped(model.status());
  auto calibration = top.Object("calibration");
  if (!calibration.ok()) return wrapped(calibration.status());
  auto arch = model->String("architecture");
  auto layers_n = model->Int("num_layers", 1, kMaxLayers);
  auto kv_heads = model->Int("num_kv_heads", 1, kMaxKvHeads);
  auto head_dim = model->Int("head_dim", 1, kMaxHeadDim);
  auto config_fp = model->String("config_fingerprint");
  auto weights_fp = model->String("weights_fingerprint");
  auto dataset = calibration->String("dataset");
  auto samples = calibration->Int("samples", 0, std::numeric_limits<int64_t>::max());
  auto seqlen = calibration->Int("seqlen", 0, std::numeric_limits<int64_t>::max());
  auto seed = calibration->Int("seed", std::numeric_limits<int64_t>::min(),
                               std::numeric_limits<int64_t>::max());
  for (const absl::Status& s : {arch.status(), layers_n.status(), kv_heads.status(),
                                head_dim.status(), config_fp.status(), weights_fp.status(),
                                dataset.status(), samples.status(), seqlen.status(),
                                seed.status()}) {
    if (!s.ok()) return wrapped(s);
  }
  p.model = {*arch, *layers_n, *kv_heads, *head_dim, *config_fp, *weights_fp};
  p.calibration = {*dataset, *samples, *seqlen, *seed};
  const ir::Json& layers = j.at("layers");
  if (!layers.is_array() || static_cast<int64_t>(layers.size()) != p.model.num_layers) {
    return Error("layers", absl::StrCat("has ", layers.is_array() ? layers.size() : 0,
                                        " entries but the model has ", p.model.num_layers,
                                        " layers"));
  }
  bool all_zero = true;
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string where = absl::StrCat("layers[", i, "]");
    if (!layers[i].is_object()) return Error(where, "expected an object");
    const JsonReader l(layers[i], source_, where + ".");
    auto index = l.Int("layer", 0, kMaxLayers);
    if (!index.ok()) return wrapped(index.status());
    if (*index != static_cast<int64_t>(i)) {
      return Error(where, absl::StrCat("holds layer ", *index, ", expected ", i));
    }
    KvLayerStats stats;
    auto tokens = l.Int("tokens", 0, std::numeric_limits<int64_t>::max());
    if (!tokens.ok()) return wrapped(tokens.status());
    stats.tokens = *tokens;
    if (stats.tokens <= 0) return Error(where, "no tokens were observed");
    KVCC_ASSIGN_OR_RETURN(stats.k,
                          Tensor(l.At("k"), p.model.num_kv_heads, p.model.head_dim, where + ".k"));
    KVCC_ASSIGN_OR_RETURN(stats.v,
                          Tensor(l.At("v"), p.model.num_kv_heads, p.model.head_dim, where + ".v"));
    all_zero = all_zero && IsZero(stats.k.layer) && IsZero(stats.v.layer);
    p.layers.push_back(std::move(stats));
  }
  if (all_zero) {
    return Error("layers", "every K and V range is [0, 0]: the calibration observed nothing");
  }
  return p;
}

uint64_t Fnv1a64(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

std::string WeightsFingerprint(const ir::Graph& graph) {
  constexpr size_t kWhole = size_t{64} << 10, kBlocks = 256, kBlock = 256;
  ir::Xxh64 h;
  for (const ir::Value* w : graph.weights()) {
    h.Update(w->name);
    h.Update(absl::StrCat("\0", w->type.ToString(), "\0"));
    const ir::WeightData& d = *w->weight;
    if (d.size <= kWhole) {
      if (d.size > 0) h.Update(d.bytes, d.size);
      continue;
    }
    for (size_t i = 0; i < kBlocks; ++i) {
      h.Update(d.bytes + (d.size - kBlock) * i / (kBlocks - 1), kBlock);
    }
  }
  return absl::StrCat("xxh64:", ir::Xxh64Hex(h.Digest()));
}

KvModelIdentity IdentityOf(const ir::Module& module) {
  const ir::ModelConfig& c = module.config;
  KvModelIdentity id;
  id.weights_fingerprint = WeightsFingerprint(module.graph);
  id.architecture = c.architecture;
  id.num_layers = c.num_layers;
  id.num_kv_heads = c.num_kv_heads;
  id.head_dim = c.head_dim;
  // Fields that determine K and V; token ids and dtype of the checkpoint do not.
  Json j = {c.architecture,
            c.hidden_size,
            c.num_layers,
            c.num_heads,
            c.num_kv_heads,
            c.head_dim,
            c.intermediate_size,
            c.vocab_size,
            c.max_position,
            c.rms_norm_eps,
            c.rope_theta,
            c.rope_scaling.type,
            c.rope_scaling.factor,
            c.rope_scaling.low_freq_factor,
            c.rope_scaling.high_freq_factor,
            c.rope_scaling.original_max_position,
            c.tie_embeddings,
            c.qkv_bias};
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(Fnv1a64(j.dump())));
  id.config_fingerprint = std::string("fnv1a64:") + hex;
  return id;
}

std::string KvParamsPath(const std::string& dir) {
  return dir.empty() ? std::string(kKvParamsFileName) : absl::StrCat(dir, "/", kKvParamsFileName);
}

std::string KvParamsToJson(const KvParams& p) {
  Json j;
  j["format"] = kFormat;
  j["version"] = kKvParamsVersion;
  j["model"] = {{"architecture", p.model.architecture},
                {"num_layers", p.model.num_layers},
                {"num_kv_heads", p.model.num_kv_heads},
                {"head_dim", p.model.head_dim},
                {"config_fingerprint", p.model.config_fingerprint},
                {"weights_fingerprint", p.model.weights_fingerprint}};
  j["calibration"] = {{"dataset", p.calibration.dataset},
                      {"samples", p.calibration.samples},
                      {"seqlen", p.calibration.seqlen},
                      {"seed", p.calibration.seed}};
  j["quantization"] = {{"zp", "(min + max) / 2"}, {"scale", "(max - min) / 255"}};
  Json layers = Json::array();
  for (size_t i = 0; i < p.layers.size(); ++i) {
    layers.push_back(Json{{"layer", i},
                          {"tokens", p.layers[i].tokens},
                          {"k", TensorToJson(p.layers[i].k)},
                          {"v", TensorToJson(p.layers[i].v)}});
  }
  j["layers"] = layers;
  return j.dump(1) + "\n";
}

absl::StatusOr<KvParams> KvParamsFromJson(const std::string& text, const std::string& source) {
  Reader r(source);
  auto j = ir::ParseJson(text, source, {kMaxDepth, kMaxFileBytes});
  if (!j.ok()) return r.Error("top level", absl::StrCat("not a JSON object: ", j.status().message()));
  try {
    return r.Params(*j);
  } catch (const nlohmann::json::exception& e) {
    return r.Error("structure", e.what());
  }
}

absl::Status WriteKvParams(const KvParams& params, const std::string& path) {
  return ir::WriteFileAtomically(path, KvParamsToJson(params));
}

absl::StatusOr<KvParams> ReadKvParams(const std::string& path) {
  auto text = ir::ReadRegularFile(path, kMaxFileBytes, "KV parameter file");
  if (absl::IsNotFound(text.status())) {
    return absl::NotFoundError(absl::StrCat("KV parameter file ", path,
                                            " not found; run `kvcc calibrate` first"));
  }
  if (!text.ok()) return text.status();
  return KvParamsFromJson(*text, path);
}

absl::Status CheckKvParamsMatch(const KvParams& params, const ir::Module& module,
                                const std::string& source) {
  const KvModelIdentity want = IdentityOf(module);
  const KvModelIdentity& got = params.model;
  if (got == want) return absl::OkStatus();
  KvModelIdentity same_weights = got;
  same_weights.weights_fingerprint = want.weights_fingerprint;
  if (same_weights == want) {
    return absl::FailedPreconditionError(absl::StrCat(
        "KV parameter file ", source, " was calibrated for other weights of this model's config ",
        "(weights ", got.weights_fingerprint, ", this model's ", want.weights_fingerprint,
        "): the checkpoint changed since; re-run `kvcc calibrate` for this model"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "KV parameter file ", source, " was calibrated for a different model (", got.architecture,
      ", ", got.num_layers, " layers, ", got.num_kv_heads, " kv heads x ", got.head_dim,
      ", config ", got.config_fingerprint, ") than this one (", want.architecture, ", ",
      want.num_layers, " layers, ", want.num_kv_heads, " kv heads x ", want.head_dim,
      ", config ", want.config_fingerprint, "); run `kvcc calibrate` for this model"));
}

}  // namespace kvcc::passes
