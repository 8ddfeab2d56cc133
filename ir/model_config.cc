#include "ir/model_config.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"

namespace kvcc::ir {
namespace {
// nlohmann converts a floating-point JSON number to int64 without a range check (undefined
// behaviour for 1e300), so integers must be JSON integers.
int64_t GetInt(const nlohmann::json& j, const char* key) {
  const nlohmann::json& v = j.at(key);
  if (!v.is_number_integer()) {
    throw nlohmann::json::type_error::create(302, std::string(key) + " must be an integer", &v);
  }
  return v.get<int64_t>();
}
}  // namespace

int64_t ModelConfig::NumParameters() const {
  const int64_t h = hidden_size;
  const int64_t q = num_heads * head_dim, kv = num_kv_heads * head_dim;
  int64_t per_layer = h * q + 2 * h * kv + q * h + 3 * h * intermediate_size + 2 * h;
  if (qkv_bias) per_layer += q + 2 * kv;
  if (o_bias) per_layer += h;
  int64_t total = num_layers * per_layer + vocab_size * h + h;
  if (!tie_embeddings) total += vocab_size * h;
  return total;
}

int64_t ModelConfig::KvBytesPerSession(int64_t tokens, DType cache_dtype) const {
  return 2 * num_layers * DTypeBytes(cache_dtype, tokens * num_kv_heads * head_dim);
}

std::string ModelConfig::ToJson(int indent) const {
  nlohmann::ordered_json j;
  j["architecture"] = architecture;
  j["hidden_size"] = hidden_size;
  j["num_layers"] = num_layers;
  j["num_heads"] = num_heads;
  j["num_kv_heads"] = num_kv_heads;
  j["head_dim"] = head_dim;
  j["intermediate_size"] = intermediate_size;
  j["vocab_size"] = vocab_size;
  j["max_position"] = max_position;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  j["rope_scaling"] = {{"type", rope_scaling.type},
                       {"factor", rope_scaling.factor},
                       {"low_freq_factor", rope_scaling.low_freq_factor},
                       {"high_freq_factor", rope_scaling.high_freq_factor},
                       {"original_max_position", rope_scaling.original_max_position}};
  j["tie_embeddings"] = tie_embeddings;
  j["qkv_bias"] = qkv_bias;
  j["o_bias"] = o_bias;
  j["bos_token_id"] = bos_token_id;
  // As config.json has it: -1 for none, an id, or a list when there are several.
  if (eos_token_ids.size() > 1) {
    j["eos_token_id"] = eos_token_ids;
  } else {
    j["eos_token_id"] = eos_token_ids.empty() ? int64_t{-1} : eos_token_ids.front();
  }
  j["weight_dtype"] = std::string(DTypeName(weight_dtype));
  return j.dump(indent);
}

absl::StatusOr<ModelConfig> ModelConfig::FromJson(const std::string& json) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("kvcc model config is not a JSON object");
  }
  ModelConfig c;
  try {
    c.architecture = j.at("architecture").get<std::string>();
    c.hidden_size = GetInt(j, "hidden_size");
    c.num_layers = GetInt(j, "num_layers");
    c.num_heads = GetInt(j, "num_heads");
    c.num_kv_heads = GetInt(j, "num_kv_heads");
    c.head_dim = GetInt(j, "head_dim");
    c.intermediate_size = GetInt(j, "intermediate_size");
    c.vocab_size = GetInt(j, "vocab_size");
    c.max_position = GetInt(j, "max_position");
    c.rms_norm_eps = j.at("rms_norm_eps").get<double>();
    c.rope_theta = j.at("rope_theta").get<double>();
    const auto& rs = j.at("rope_scaling");
    c.rope_scaling.type = rs.at("type").get<std::string>();
    c.rope_scaling.factor = rs.at("factor").get<double>();
    c.rope_scaling.low_freq_factor = rs.at("low_freq_factor").get<double>();
    c.rope_scaling.high_freq_factor = rs.at("high_freq_factor").get<double>();
    c.rope_scaling.original_max_position = GetInt(rs, "original_max_position");
    c.tie_embeddings = j.at("tie_embeddings").get<bool>();
    c.qkv_bias = j.at("qkv_bias").get<bool>();
    c.o_bias = j.at("o_bias").get<bool>();
    c.bos_token_id = GetInt(j, "bos_token_id");
    if (j.at("eos_token_id").is_array()) {
      for (const auto& id : j.at("eos_token_id")) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0) {
          throw nlohmann::json::type_error::create(302, "eos_token_id must list ids >= 0", &id);
        }
        c.eos_token_ids.push_back(id.get<int64_t>());
      }
    } else if (const int64_t eos = GetInt(j, "eos_token_id"); eos >= 0) {
      c.eos_token_ids.push_back(eos);
    }
    KVCC_ASSIGN_OR_RETURN(auto dtype, ParseDType(j.at("weight_dtype").get<std::string>()));
    c.weight_dtype = dtype;
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("kvcc model config: ", e.what()));
  }
  return c;
}

}  // namespace kvcc::ir
