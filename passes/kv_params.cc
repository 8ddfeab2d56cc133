#include "passes/kv_params.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "ir/atomic_file.h"
#include "ir/kv_quant.h"

namespace kvcc::passes {
namespace {

using Json = nlohmann::ordered_json;
constexpr char kFormat[] = "kvcc-kv-params";

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

// Parsing helpers: the caller catches nlohmann's exceptions for wrong JSON types, these check
// the values.
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  absl::Status Error(const std::string& where, const std::string& what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("KV parameter file ", source_, ": ", where, ": ", what,
                     " (re-run `kvcc calibrate` to regenerate it)"));
  }

  absl::StatusOr<float> Float(const Json& j, const std::string& where) const {
    if (!j.is_number()) return Error(where, "expected a number");
    double d = j.get<double>();
    float f = static_cast<float>(d);
    if (!std::isfinite(d) || !std::isfinite(f)) return Error(where, "not a finite float");
    return f;
  }

  absl::StatusOr<RangeStat> Range(const Json& j, const std::string& where) const {
    RangeStat r;
    auto mn = Float(j.at("min"), where + ".min");
    if (!mn.ok()) return mn.status();
    auto mx = Float(j.at("max"), where + ".max");
    if (!mx.ok()) return mx.status();
    auto ab = Float(j.at("absmax"), where + ".absmax");
    if (!ab.ok()) return ab.status();
    r.min = *mn;
    r.max = *mx;
    r.absmax = *ab;
    if (r.min > r.max) return Error(where, absl::StrCat("min ", r.min, " > max ", r.max));
    if (r.absmax != std::max(std::fabs(r.min), std::fabs(r.max))) {
      return Error(where, absl::StrCat("absmax ", r.absmax, " is not max(|min|, |max|)"));
    }
    return r;
  }

  absl::StatusOr<std::vector<RangeStat>> Ranges(const Json& j, size_t want,
                                                const std::string& where) const {
    const Json& mins = j.at("min");
    const Json& maxs = j.at("max");
    const Json& abss = j.at("absmax");
    for (const Json* a : {&mins, &maxs, &abss}) {
      if (!a->is_array() || a->size() != want) {
        return Error(where, absl::StrCat("expected arrays of ", want, " entries, got ",
                                         a->is_array() ? a->size() : 0));
      }
    }
    std::vector<RangeStat> out(want);
    for (size_t i = 0; i < want; ++i) {
      auto r = Range(Json{{"min", mins[i]}, {"max", maxs[i]}, {"absmax", abss[i]}},
                     absl::StrCat(where, "[", i, "]"));
      if (!r.ok()) return r.status();
      out[i] = *r;
    }
    return out;
  }

  absl::StatusOr<KvTensorStats> Tensor(const Json& j, int64_t kv_heads, int64_t head_dim,
                                       const std::string& where) const {
    KvTensorStats t;
    auto layer = Range(j, where);
    if (!layer.ok()) return layer.status();
    auto heads = Ranges(j.at("per_head"), kv_heads, where + ".per_head");
    if (!heads.ok()) return heads.status();
    auto channels = Ranges(j.at("per_channel"), kv_heads * head_dim, where + ".per_channel");
    if (!channels.ok()) return channels.status();
    t.channels = *channels;
    // The per-head and per-layer ranges are folds of the channels; a disagreement means the
    // file was edited by hand or damaged.
    FoldChannels(t, static_cast<int>(kv_heads), static_cast<int>(head_dim));
    if (!(t.layer == *layer)) {
      return Error(where, "per-layer min/max/absmax disagree with the per-channel statistics");
    }
    if (t.heads != *heads) {
      return Error(where, "per-head min/max/absmax disagree with the per-channel statistics");
    }
    auto zp = Float(j.at("zp"), where + ".zp");
    if (!zp.ok()) return zp.status();
    auto scale = Float(j.at("scale"), where + ".scale");
    if (!scale.ok()) return scale.status();
    ir::ZpScale p = ir::CalibratedParams(t.layer.min, t.layer.max, 255);
    if (*zp != p.zp || *scale != p.scale) {
      return Error(where, absl::StrCat("zp/scale ", *zp, "/", *scale,
                                       " disagree with min/max (expected ", p.zp, "/", p.scale,
                                       ")"));
    }
    return t;
  }

 private:
  std::string source_;
};

uint64_t Fnv1a64(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

KvModelIdentity IdentityOf(const ir::ModelConfig& c) {
  KvModelIdentity id;
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
                {"config_fingerprint", p.model.config_fingerprint}};
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
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return r.Error("top level", "not a JSON object");
  KvParams p;
  try {
    if (!j.contains("format") || j.at("format") != kFormat) {
      return r.Error("format", absl::StrCat("not a kvcc KV parameter file (expected \"format\": \"",
                                            kFormat, "\")"));
    }
    const Json& version = j.at("version");
    if (!version.is_number_integer() || version.get<int64_t>() != kKvParamsVersion) {
      return r.Error("version", absl::StrCat("unsupported version ", version.dump(),
                                             "; this kvcc reads version ", kKvParamsVersion));
    }
    const Json& m = j.at("model");
    p.model.architecture = m.at("architecture").get<std::string>();
    p.model.num_layers = m.at("num_layers").get<int64_t>();
    p.model.num_kv_heads = m.at("num_kv_heads").get<int64_t>();
    p.model.head_dim = m.at("head_dim").get<int64_t>();
    p.model.config_fingerprint = m.at("config_fingerprint").get<std::string>();
    if (p.model.num_layers <= 0 || p.model.num_kv_heads <= 0 || p.model.head_dim <= 0 ||
        p.model.num_kv_heads * p.model.head_dim > (int64_t{1} << 20)) {
      return r.Error("model", "layer, kv head and head_dim counts must be positive and sane");
    }
    const Json& c = j.at("calibration");
    p.calibration.dataset = c.at("dataset").get<std::string>();
    p.calibration.samples = c.at("samples").get<int64_t>();
    p.calibration.seqlen = c.at("seqlen").get<int64_t>();
    p.calibration.seed = c.at("seed").get<int64_t>();
    const Json& layers = j.at("layers");
    if (!layers.is_array() || static_cast<int64_t>(layers.size()) != p.model.num_layers) {
      return r.Error("layers", absl::StrCat("has ", layers.is_array() ? layers.size() : 0,
                                            " entries but the model has ", p.model.num_layers,
                                            " layers"));
    }
    for (size_t i = 0; i < layers.size(); ++i) {
      const Json& l = layers[i];
      const std::string where = absl::StrCat("layers[", i, "]");
      if (l.at("layer").get<int64_t>() != static_cast<int64_t>(i)) {
        return r.Error(where, absl::StrCat("holds layer ", l.at("layer").dump(), ", expected ", i));
      }
      KvLayerStats stats;
      stats.tokens = l.at("tokens").get<int64_t>();
      if (stats.tokens <= 0) return r.Error(where, "no tokens were observed");
      auto k = r.Tensor(l.at("k"), p.model.num_kv_heads, p.model.head_dim, where + ".k");
      if (!k.ok()) return k.status();
      auto v = r.Tensor(l.at("v"), p.model.num_kv_heads, p.model.head_dim, where + ".v");
      if (!v.ok()) return v.status();
      stats.k = std::move(*k);
      stats.v = std::move(*v);
      p.layers.push_back(std::move(stats));
    }
  } catch (const nlohmann::json::exception& e) {
    return r.Error("structure", e.what());
  }
  return p;
}

absl::Status WriteKvParams(const KvParams& params, const std::string& path) {
  return ir::WriteFileAtomically(path, KvParamsToJson(params));
}

absl::StatusOr<KvParams> ReadKvParams(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("KV parameter file ", path,
                                            " not found; run `kvcc calibrate` first"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return KvParamsFromJson(ss.str(), path);
}

absl::Status CheckKvParamsMatch(const KvParams& params, const ir::ModelConfig& config,
                                const std::string& source) {
  const KvModelIdentity want = IdentityOf(config);
  const KvModelIdentity& got = params.model;
  if (got == want) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "KV parameter file ", source, " was calibrated for a different model (", got.architecture,
      ", ", got.num_layers, " layers, ", got.num_kv_heads, " kv heads x ", got.head_dim,
      ", config ", got.config_fingerprint, ") than this one (", want.architecture, ", ",
      want.num_layers, " layers, ", want.num_kv_heads, " kv heads x ", want.head_dim,
      ", config ", want.config_fingerprint, "); run `kvcc calibrate` for this model"));
}

}  // namespace kvcc::passes
