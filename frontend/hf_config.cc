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
#include "ir/file_read.h"
#include "ir/json_reader.h"
#include "ir/status_macros.h"

namespace kvcc::frontend {
namespace {

using Json = ir::Json;

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

using Reader = ir::JsonReader;

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
  KVCC_ASSIGN_OR_RETURN(name, r.String(key, std::string("float32")));
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
  KVCC_ASSIGN_OR_RETURN(type, r.String(type_key));
  if (type == "default") return absl::OkStatus();
  if (type != "linear" && type != "dynamic" && type != "llama3") {
    return r.Bad(type_key, r.At(type_key),
                 "one of \"linear\", \"dynamic\", \"llama3\" (other rope scalings are not "
                 "supported)");
  }
  ir::RopeScaling& s = c->rope_scaling;
  s.type = type;
  KVCC_ASSIGN_OR_RETURN(s.factor, r.Float("factor", 0.0, true, 1e6));
  if (type == "dynamic") {
    KVCC_ASSIGN_OR_RETURN(s.original_max_position,
                r.Int("original_max_position_embeddings", 1, kMaxPosition, c->max_position));
  } else if (type == "llama3") {
    KVCC_ASSIGN_OR_RETURN(s.low_freq_factor, r.Float("low_freq_factor", 0.0, true, 1e6));
    KVCC_ASSIGN_OR_RETURN(s.high_freq_factor, r.Float("high_freq_factor", 0.0, true, 1e6));
    KVCC_ASSIGN_OR_RETURN(s.original_max_position,
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
  KVCC_ASSIGN_OR_RETURN(c->rope_theta, r.Float("base", 0.0, true, 1e12, 10000.0));
  std::string type;
  KVCC_ASSIGN_OR_RETURN(type, r.String("type", std::string("origin")));
  if (type == "origin") return absl::OkStatus();
  if (type != "dynamic") return r.Bad("type", r.At("type"), "\"origin\" or \"dynamic\"");
  c->rope_scaling.type = "dynamic";
  KVCC_ASSIGN_OR_RETURN(c->rope_scaling.factor, r.Float("scaling_factor", 1.0, false, 1e6, 1.0));
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

  KVCC_ASSIGN_OR_RETURN(c.hidden_size, r.Int("hidden_size", 1, kMaxHidden));
  KVCC_ASSIGN_OR_RETURN(c.num_layers, r.Int("num_hidden_layers", 1, kMaxLayers));
  KVCC_ASSIGN_OR_RETURN(c.num_heads, r.Int("num_attention_heads", 1, kMaxHeads));
  KVCC_ASSIGN_OR_RETURN(c.num_kv_heads, r.Int("num_key_value_heads", 1, kMaxHeads, c.num_heads));
  KVCC_ASSIGN_OR_RETURN(c.intermediate_size, r.Int("intermediate_size", 1, kMaxIntermediate));
  KVCC_ASSIGN_OR_RETURN(c.vocab_size, r.Int("vocab_size", 1, kMaxVocab));
  KVCC_ASSIGN_OR_RETURN(c.max_position,
              r.Int("max_position_embeddings", 1, kMaxPosition, DefaultMaxPosition(*arch)));

  if (c.num_heads % c.num_kv_heads != 0) {
    return r.Bad("num_key_value_heads", r.At("num_key_value_heads"),
                 absl::StrCat("a divisor of num_attention_heads (", c.num_heads, ")"));
  }
  if (r.Has("head_dim")) {
    KVCC_ASSIGN_OR_RETURN(c.head_dim, r.Int("head_dim", 2, kMaxHeadDim));
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
  KVCC_ASSIGN_OR_RETURN(act, r.String("hidden_act", std::string("silu")));
  if (act != "silu") return r.Bad("hidden_act", r.At("hidden_act"), "\"silu\" (SwiGLU MLP)");

  KVCC_ASSIGN_OR_RETURN(c.rms_norm_eps, r.Float("rms_norm_eps", 0.0, true, 1.0, 1e-6));
  KVCC_ASSIGN_OR_RETURN(c.rope_theta, r.Float("rope_theta", 0.0, true, 1e12, 10000.0));
  KVCC_ASSIGN_OR_RETURN(c.tie_embeddings, r.Bool("tie_word_embeddings", false));
  KVCC_ASSIGN_OR_RETURN(c.weight_dtype, TorchDType(r));
  KVCC_ASSIGN_OR_RETURN(c.bos_token_id, TokenId(r, "bos_token_id", c.vocab_size));
  KVCC_ASSIGN_OR_RETURN(c.eos_token_id, TokenId(r, "eos_token_id", c.vocab_size));

  switch (*arch) {
    case Arch::kLlama:
    case Arch::kMistral: {
      KVCC_ASSIGN_OR_RETURN(c.qkv_bias, r.Bool("attention_bias", false));
      bool mlp_bias = false;
      KVCC_ASSIGN_OR_RETURN(mlp_bias, r.Bool("mlp_bias", false));
      if (mlp_bias) return r.Bad("mlp_bias", r.At("mlp_bias"), "false (MLP biases unsupported)");
      c.o_bias = c.qkv_bias;
      break;
    }
    case Arch::kQwen2: {
      c.qkv_bias = true;
      bool sliding = false;
      KVCC_ASSIGN_OR_RETURN(sliding, r.Bool("use_sliding_window", false));
      if (sliding) {
        return r.Bad("use_sliding_window", r.At("use_sliding_window"),
                     "false (sliding-window attention is not supported)");
      }
      break;
    }
    case Arch::kInternLM:
    case Arch::kInternLM2:
      // Both configuration classes default `bias` to true.
      KVCC_ASSIGN_OR_RETURN(c.qkv_bias, r.Bool("bias", true));
      c.o_bias = c.qkv_bias;
      break;
  }

  if (*arch == Arch::kInternLM && r.Has("rotary")) {
    KVCC_RETURN_IF_ERROR(ParseInternLMRotary(r, file, &c));
  } else if (auto s = ParseRopeScaling(r, file, &c); !s.ok()) {
    return s;
  }

  // Mistral's sliding window: attention over the whole session equals sliding-window attention
  // while a session is no longer than the window, so the usable length is capped there.
  if (*arch == Arch::kMistral && r.Has("sliding_window")) {
    int64_t window = 0;
    KVCC_ASSIGN_OR_RETURN(window, r.Int("sliding_window", 1, kMaxPosition));
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
  KVCC_ASSIGN_OR_RETURN(Json j, ir::ParseJson(json_text, name));
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": expected a JSON object, got ", ir::ShowJson(j)));
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
  KVCC_ASSIGN_OR_RETURN(std::string text,
                        ir::ReadRegularFile(file.string(), kMaxConfigBytes, "config"));
  return ParseHfConfig(text, file.string());
}

}  // namespace kvcc::frontend
