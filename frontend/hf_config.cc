#include "frontend/hf_config.h"

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <system_error>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace kvcc::frontend {
namespace {

using Json = nlohmann::json;

// Shapes beyond these are not models but corrupted files; the bounds also keep every size
// product (parameters, bytes) far from int64 overflow.
constexpr int64_t kMaxHidden = int64_t{1} << 18;
constexpr int64_t kMaxIntermediate = int64_t{1} << 20;
constexpr int64_t kMaxVocab = int64_t{1} << 23;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxHeads = 4096;
constexpr int64_t kMaxHeadDim = 4096;
constexpr int64_t kMaxPosition = int64_t{1} << 30;
constexpr size_t kMaxConfigBytes = 16 << 20;

enum class Arch { kLlama, kMistral, kQwen2, kInternLM, kInternLM2 };

std::optional<Arch> ArchFromName(const std::string& name) {
  if (name == "LlamaForCausalLM") return Arch::kLlama;
  if (name == "MistralForCausalLM") return Arch::kMistral;
  if (name == "Qwen2ForCausalLM") return Arch::kQwen2;
  if (name == "InternLMForCausalLM") return Arch::kInternLM;
  if (name == "InternLM2ForCausalLM") return Arch::kInternLM2;
  return std::nullopt;
}

// A short rendering of a JSON value for messages (never throws: invalid UTF-8 is replaced).
std::string Show(const Json& v) {
  std::string s = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

// Typed, bounds-checked access to the keys of one JSON object. Every failure names the config
// file, the key (with its parent object, e.g. rope_scaling.factor) and the offending value.
class Reader {
 public:
  Reader(const Json& object, std::string file, std::string prefix = "")
      : j_(object), file_(std::move(file)), prefix_(std::move(prefix)) {}

  bool Has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  const Json& At(const char* key) const { return j_.at(key); }
  std::string Key(const char* key) const { return prefix_ + key; }

  absl::Status Bad(const char* key, const Json& value, absl::string_view expected) const {
    return absl::InvalidArgumentError(absl::StrCat(file_, ": key '", Key(key), "' is ",
                                                   Show(value), ", expected ", expected));
  }
  // A required key that is absent, or present as null.
  absl::Status Missing(const char* key, absl::string_view expected) const {
    return absl::InvalidArgumentError(absl::StrCat(file_, ": key '", Key(key), "' is ",
                                                   j_.contains(key) ? "null" : "missing",
                                                   " (expected ", expected, ")"));
  }

  // An integer in [lo, hi]; `fallback` when absent or null, required when no fallback.
  absl::StatusOr<int64_t> Int(const char* key, int64_t lo, int64_t hi,
                              std::optional<int64_t> fallback = std::nullopt) const {
    std::string expected = absl::StrCat("an integer in [", lo, ", ", hi, "]");
    if (!Has(key)) {
      if (fallback) return *fallback;
      return Missing(key, expected);
    }
    const Json& v = At(key);
    int64_t x = 0;
    if (v.is_number_unsigned()) {
      uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Bad(key, v, expected);
      }
      x = static_cast<int64_t>(u);
    } else if (v.is_number_integer()) {
      x = v.get<int64_t>();
    } else {
      return Bad(key, v, expected);
    }
    if (x < lo || x > hi) return Bad(key, v, expected);
    return x;
  }

  // A finite number, integer or not, with lo < x (or lo <= x when !strict_lo) and x <= hi.
  absl::StatusOr<double> Float(const char* key, double lo, bool strict_lo, double hi,
                               std::optional<double> fallback = std::nullopt) const {
    std::string expected =
        absl::StrCat("a number ", strict_lo ? "> " : ">= ", lo, " and <= ", hi);
    if (!Has(key)) {
      if (fallback) return *fallback;
      return Missing(key, expected);
    }
    const Json& v = At(key);
    if (!v.is_number()) return Bad(key, v, expected);
    double x = v.get<double>();
    if (!std::isfinite(x) || x > hi || (strict_lo ? x <= lo : x < lo)) {
      return Bad(key, v, expected);
    }
    return x;
  }

  absl::StatusOr<bool> Bool(const char* key, bool fallback) const {
    if (!Has(key)) return fallback;
    const Json& v = At(key);
    if (!v.is_boolean()) return Bad(key, v, "true or false");
    return v.get<bool>();
  }

  absl::StatusOr<std::string> String(const char* key,
                                     std::optional<std::string> fallback = std::nullopt) const {
    if (!Has(key)) {
      if (fallback) return *fallback;
      return Missing(key, "a string");
    }
    const Json& v = At(key);
    if (!v.is_string()) return Bad(key, v, "a string");
    return v.get<std::string>();
  }

 private:
  const Json& j_;
  std::string file_;
  std::string prefix_;
};

#define KVCC_ASSIGN(lhs, expr)            \
  do {                                    \
    auto kvcc_value_ = (expr);            \
    if (!kvcc_value_.ok()) return kvcc_value_.status(); \
    lhs = *kvcc_value_;                   \
  } while (0)

// bos/eos: absent or null means none; eos may be a list (generation stops at any of them), of
// which the first is kept.
absl::StatusOr<int64_t> TokenId(const Reader& r, const char* key, int64_t vocab) {
  if (!r.Has(key)) return -1;
  const Json& v = r.At(key);
  const Json* id = &v;
  if (v.is_array()) {
    if (v.empty()) return -1;
    id = &v.front();
  }
  if (!id->is_number_integer() || id->get<int64_t>() < 0 || id->get<int64_t>() >= vocab ||
      (id->is_number_unsigned() &&
       id->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))) {
    return r.Bad(key, v, absl::StrCat("a token id in [0, ", vocab, ") or a list of them"));
  }
  return id->get<int64_t>();
}

absl::StatusOr<ir::DType> TorchDType(const Reader& r) {
  // transformers >= 4.56 writes `dtype`; older versions `torch_dtype`. HF loads float32 when
  // neither is given.
  const char* key = r.Has("torch_dtype") ? "torch_dtype" : "dtype";
  std::string name;
  KVCC_ASSIGN(name, r.String(key, std::string("float32")));
  if (name == "float32" || name == "float") return ir::DType::kF32;
  if (name == "float16" || name == "half") return ir::DType::kF16;
  if (name == "bfloat16") return ir::DType::kBF16;
  return r.Bad(key, r.At(key), "\"float32\", \"float16\" or \"bfloat16\"");
}

// HF's rope_scaling object: {"type"|"rope_type": linear|dynamic|llama3|default, "factor", ...}.
absl::Status ParseRopeScaling(const Reader& top, const std::string& file, ir::ModelConfig* c) {
  if (!top.Has("rope_scaling")) return absl::OkStatus();
  const Json& rs = top.At("rope_scaling");
  if (!rs.is_object()) return top.Bad("rope_scaling", rs, "null or an object");
  Reader r(rs, file, "rope_scaling.");
  // transformers prefers rope_type and falls back to the legacy `type`.
  const char* type_key = r.Has("rope_type") ? "rope_type" : "type";
  std::string type;
  KVCC_ASSIGN(type, r.String(type_key));
  if (type == "default") return absl::OkStatus();
  if (type != "linear" && type != "dynamic" && type != "llama3") {
    return r.Bad(type_key, r.At(type_key),
                 "one of \"linear\", \"dynamic\", \"llama3\" (other rope scalings are not "
                 "supported)");
  }
  ir::RopeScaling& s = c->rope_scaling;
  s.type = type;
  KVCC_ASSIGN(s.factor, r.Float("factor", 0.0, true, 1e6));
  if (type == "dynamic") {
    KVCC_ASSIGN(s.original_max_position,
                r.Int("original_max_position_embeddings", 1, kMaxPosition, c->max_position));
  } else if (type == "llama3") {
    KVCC_ASSIGN(s.low_freq_factor, r.Float("low_freq_factor", 0.0, true, 1e6));
    KVCC_ASSIGN(s.high_freq_factor, r.Float("high_freq_factor", 0.0, true, 1e6));
    KVCC_ASSIGN(s.original_max_position,
                r.Int("original_max_position_embeddings", 1, kMaxPosition));
    if (s.high_freq_factor <= s.low_freq_factor) {
      return r.Bad("high_freq_factor", r.At("high_freq_factor"),
                   absl::StrCat("a number greater than low_freq_factor (", s.low_freq_factor,
                                ")"));
    }
  }
  return absl::OkStatus();
}

// InternLM (v1) keeps its rope settings in `rotary`: {"base": theta, "type": origin|dynamic,
// "scaling_factor": f}.
absl::Status ParseInternLMRotary(const Reader& top, const std::string& file,
                                 ir::ModelConfig* c) {
  const Json& rot = top.At("rotary");
  if (!rot.is_object()) return top.Bad("rotary", rot, "an object");
  Reader r(rot, file, "rotary.");
  KVCC_ASSIGN(c->rope_theta, r.Float("base", 0.0, true, 1e12, 10000.0));
  std::string type;
  KVCC_ASSIGN(type, r.String("type", std::string("origin")));
  if (type == "origin") return absl::OkStatus();
  if (type != "dynamic") return r.Bad("type", r.At("type"), "\"origin\" or \"dynamic\"");
  c->rope_scaling.type = "dynamic";
  KVCC_ASSIGN(c->rope_scaling.factor, r.Float("scaling_factor", 1.0, false, 1e6, 1.0));
  c->rope_scaling.original_max_position = c->max_position;
  return absl::OkStatus();
}

int64_t DefaultMaxPosition(Arch arch) {
  switch (arch) {
    case Arch::kMistral: return 4096 * 32;
    case Arch::kQwen2: return 32768;
    default: return 2048;
  }
}

absl::StatusOr<ir::ModelConfig> ParseObject(const Json& j, const std::string& file) {
  Reader r(j, file);
  ir::ModelConfig c;

  if (!r.Has("architectures")) return r.Missing("architectures", "a list of one architecture");
  const Json& archs = r.At("architectures");
  if (!archs.is_array() || archs.empty() || !archs.front().is_string()) {
    return r.Bad("architectures", archs, "a list of one architecture name");
  }
  c.architecture = archs.front().get<std::string>();
  std::optional<Arch> arch = ArchFromName(c.architecture);
  if (!arch) {
    return r.Bad("architectures", archs,
                 "one of LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, "
                 "InternLMForCausalLM, InternLM2ForCausalLM (unknown architecture)");
  }

  KVCC_ASSIGN(c.hidden_size, r.Int("hidden_size", 1, kMaxHidden));
  KVCC_ASSIGN(c.num_layers, r.Int("num_hidden_layers", 1, kMaxLayers));
  KVCC_ASSIGN(c.num_heads, r.Int("num_attention_heads", 1, kMaxHeads));
  KVCC_ASSIGN(c.num_kv_heads, r.Int("num_key_value_heads", 1, kMaxHeads, c.num_heads));
  KVCC_ASSIGN(c.intermediate_size, r.Int("intermediate_size", 1, kMaxIntermediate));
  KVCC_ASSIGN(c.vocab_size, r.Int("vocab_size", 1, kMaxVocab));
  KVCC_ASSIGN(c.max_position,
              r.Int("max_position_embeddings", 1, kMaxPosition, DefaultMaxPosition(*arch)));

  if (c.num_heads % c.num_kv_heads != 0) {
    return r.Bad("num_key_value_heads", r.At("num_key_value_heads"),
                 absl::StrCat("a divisor of num_attention_heads (", c.num_heads, ")"));
  }
  if (r.Has("head_dim")) {
    KVCC_ASSIGN(c.head_dim, r.Int("head_dim", 2, kMaxHeadDim));
  } else if (c.hidden_size % c.num_heads != 0) {
    return r.Bad("num_attention_heads", r.At("num_attention_heads"),
                 absl::StrCat("a divisor of hidden_size (", c.hidden_size,
                              ") when head_dim is not given"));
  } else {
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.head_dim % 2 != 0) {
    // Rotary embedding rotates pairs (j, j + d/2).
    const char* key = r.Has("head_dim") ? "head_dim" : "num_attention_heads";
    return r.Bad(key, r.At(key), absl::StrCat("a value giving an even head_dim (got ",
                                              c.head_dim, ")"));
  }

  std::string act;
  KVCC_ASSIGN(act, r.String("hidden_act", std::string("silu")));
  if (act != "silu") return r.Bad("hidden_act", r.At("hidden_act"), "\"silu\" (SwiGLU MLP)");

  KVCC_ASSIGN(c.rms_norm_eps, r.Float("rms_norm_eps", 0.0, true, 1.0, 1e-6));
  KVCC_ASSIGN(c.rope_theta, r.Float("rope_theta", 0.0, true, 1e12, 10000.0));
  KVCC_ASSIGN(c.tie_embeddings, r.Bool("tie_word_embeddings", false));
  KVCC_ASSIGN(c.weight_dtype, TorchDType(r));
  KVCC_ASSIGN(c.bos_token_id, TokenId(r, "bos_token_id", c.vocab_size));
  KVCC_ASSIGN(c.eos_token_id, TokenId(r, "eos_token_id", c.vocab_size));

  switch (*arch) {
    case Arch::kLlama:
    case Arch::kMistral: {
      KVCC_ASSIGN(c.qkv_bias, r.Bool("attention_bias", false));
      bool mlp_bias = false;
      KVCC_ASSIGN(mlp_bias, r.Bool("mlp_bias", false));
      if (mlp_bias) return r.Bad("mlp_bias", r.At("mlp_bias"), "false (MLP biases unsupported)");
      c.o_bias = c.qkv_bias;
      break;
    }
    case Arch::kQwen2: {
      c.qkv_bias = true;
      bool sliding = false;
      KVCC_ASSIGN(sliding, r.Bool("use_sliding_window", false));
      if (sliding) {
        return r.Bad("use_sliding_window", r.At("use_sliding_window"),
                     "false (sliding-window attention is not supported)");
      }
      break;
    }
    case Arch::kInternLM:
    case Arch::kInternLM2:
      // Both configuration classes default `bias` to true.
      KVCC_ASSIGN(c.qkv_bias, r.Bool("bias", true));
      c.o_bias = c.qkv_bias;
      break;
  }

  if (*arch == Arch::kInternLM && r.Has("rotary")) {
    if (auto s = ParseInternLMRotary(r, file, &c); !s.ok()) return s;
  } else if (auto s = ParseRopeScaling(r, file, &c); !s.ok()) {
    return s;
  }

  // Mistral's sliding window: attention over the whole session equals sliding-window attention
  // while a session is no longer than the window, so the usable length is capped there.
  if (*arch == Arch::kMistral && r.Has("sliding_window")) {
    int64_t window = 0;
    KVCC_ASSIGN(window, r.Int("sliding_window", 1, kMaxPosition));
    if (window < c.max_position) {
      if (c.rope_scaling.type == "dynamic") {
        return r.Bad("sliding_window", r.At("sliding_window"),
                     "null or >= max_position_embeddings with dynamic rope scaling");
      }
      c.max_position = window;
    }
  }
  return c;
}

}  // namespace

absl::StatusOr<ir::ModelConfig> ParseHfConfig(absl::string_view json_text, absl::string_view file) {
  std::string name(file);
  if (json_text.size() > kMaxConfigBytes) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", json_text.size(),
                                                   " bytes is too large for a config.json"));
  }
  Json j = Json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": not valid JSON"));
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": expected a JSON object, got ", Show(j)));
  }
  try {
    return ParseObject(j, name);
  } catch (const std::exception& e) {
    // The reader checks every type before converting; this is a last line of defence.
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", e.what()));
  }
}

absl::StatusOr<ir::ModelConfig> LoadHfConfig(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path file = path;
  if (fs::is_directory(file, ec)) file /= kHfConfigFileName;
  if (!fs::is_regular_file(file, ec)) {
    return absl::NotFoundError(absl::StrCat(file.string(), ": no such config file"));
  }
  uintmax_t size = fs::file_size(file, ec);
  if (ec || size > kMaxConfigBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(file.string(), ": unreadable or too large for a config.json"));
  }
  std::ifstream in(file, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) return absl::InternalError(absl::StrCat(file.string(), ": read failed"));
  return ParseHfConfig(text.str(), file.string());
}

}  // namespace kvcc::frontend
