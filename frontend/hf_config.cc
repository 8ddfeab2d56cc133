#include "frontend/hf_config.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <set>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ir/file_read.h"
#include "ir/json_reader.h"
#include "ir/status_macros.h"

namespace kvcc::frontend {
namespace {

using Json = ir::Json;
using Reader = ir::JsonReader;

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

// Top-level keys the parser reads for every architecture.
constexpr const char* kReadKeys[] = {
    "architectures", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "intermediate_size", "vocab_size", "max_position_embeddings",
    "head_dim", "hidden_act", "rms_norm_eps", "rope_theta", "rope_scaling", "rope_parameters",
    "partial_rotary_factor", "layer_types", "tie_word_embeddings", "torch_dtype", "dtype",
    "bos_token_id", "eos_token_id"};

// Keys read only for one architecture (elsewhere they are not understood).
std::vector<const char*> ArchKeys(Arch arch) {
  switch (arch) {
    case Arch::kLlama: return {"attention_bias", "mlp_bias"};
    case Arch::kMistral: return {"attention_bias", "mlp_bias", "sliding_window"};
    case Arch::kQwen2: return {"use_sliding_window", "sliding_window", "max_window_layers"};
    case Arch::kInternLM: return {"bias", "rotary"};
    case Arch::kInternLM2: return {"bias"};
  }
  return {};
}

// Keys that do not change what the model computes at inference: bookkeeping, training-only
// settings, token ids kvcc does not use, and the generic PretrainedConfig attributes older
// transformers wrote into every config (its sampling defaults there are superseded by
// generation_config.json). `pretraining_tp` > 1 made transformers 4 split each projection into
// slices and add the partial products: the same sums in another order (transformers 5 ignores
// it).
constexpr const char* kHarmlessKeys[] = {
    "model_type", "transformers_version", "use_cache", "_name_or_path", "pad_token_id",
    "initializer_range", "auto_map", "attention_dropout", "attn_implementation",
    "_attn_implementation_autoset", "pretraining_tp", "tokenizer_class", "return_dict",
    "output_hidden_states", "output_attentions", "torchscript", "use_bfloat16", "tf_legacy_loss",
    "pruned_heads", "chunk_size_feed_forward", "is_encoder_decoder", "is_decoder",
    "add_cross_attention", "tie_encoder_decoder", "cross_attention_hidden_size", "id2label",
    "label2id", "finetuning_task", "problem_type", "prefix", "sep_token_id",
    "decoder_start_token_id", "task_specific_params", "max_length", "min_length", "do_sample",
    "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty", "temperature", "top_k",
    "top_p", "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences", "output_scores",
    "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id",
    "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens",
    "begin_suppress_tokens",
    // Read (and checked) by frontend/quantization_config.h when the weights are imported.
    "quantization_config"};

// Keys of other architectures' configs that change the math; kvcc implements none of them, so
// a value other than the neutral one is refused rather than ignored.
enum class Neutral { kNull, kFalse, kZero, kOne };
struct UnsupportedKey {
  const char* key;
  Neutral neutral;
  const char* what;
};
constexpr UnsupportedKey kUnsupportedKeys[] = {
    {"final_logit_softcapping", Neutral::kNull, "logit soft-capping"},
    {"attn_logit_softcapping", Neutral::kNull, "attention logit soft-capping"},
    {"num_experts", Neutral::kZero, "mixture-of-experts layers"},
    {"num_local_experts", Neutral::kZero, "mixture-of-experts layers"},
    {"n_routed_experts", Neutral::kZero, "mixture-of-experts layers"},
    {"n_shared_experts", Neutral::kZero, "mixture-of-experts layers"},
    {"num_experts_per_tok", Neutral::kZero, "mixture-of-experts layers"},
    {"moe_intermediate_size", Neutral::kZero, "mixture-of-experts layers"},
    {"shared_expert_intermediate_size", Neutral::kZero, "mixture-of-experts layers"},
    {"use_qk_norm", Neutral::kFalse, "QK norms"},
    {"qk_layernorm", Neutral::kFalse, "QK norms"},
    {"qk_norm", Neutral::kFalse, "QK norms"},
    {"attention_sink", Neutral::kFalse, "attention sinks"},
    {"use_attention_sink", Neutral::kFalse, "attention sinks"},
    {"attention_multiplier", Neutral::kOne, "a non-default attention multiplier"},
    {"embedding_multiplier", Neutral::kOne, "a non-default embedding multiplier"},
    {"residual_multiplier", Neutral::kOne, "a non-default residual multiplier"},
    {"logits_scaling", Neutral::kOne, "logit scaling"},
    {"logit_scale", Neutral::kOne, "logit scaling"},
    {"sliding_window_pattern", Neutral::kNull, "sliding-window attention on some layers"},
    {"interleaved_sliding_window", Neutral::kNull, "sliding-window attention on some layers"},
};

bool IsNeutral(const Json& v, Neutral neutral) {
  if (v.is_null()) return true;
  switch (neutral) {
    case Neutral::kNull: return false;
    case Neutral::kFalse: return v.is_boolean() && !v.get<bool>();
    case Neutral::kZero: return v.is_number() && v.get<double>() == 0.0;
    case Neutral::kOne: return v.is_number() && v.get<double>() == 1.0;
  }
  return false;
}

const char* NeutralName(Neutral neutral) {
  switch (neutral) {
    case Neutral::kNull: return "null";
    case Neutral::kFalse: return "null or false";
    case Neutral::kZero: return "null or 0";
    case Neutral::kOne: return "null or 1";
  }
  return "null";
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

// Keys of `r`'s object outside `known`, each reported once as "<file>: key '<path>' ...".
void WarnUnknownKeys(const Reader& r, const std::set<std::string>& known,
                     std::vector<std::string>* warnings) {
  for (const auto& [key, value] : r.json().items()) {
    if (known.count(key) == 0) {
      warnings->push_back(absl::StrCat(r.file(), ": key '", r.Key(key.c_str()), "' (",
                                       ir::ShowJson(value),
                                       ") is not understood by kvcc and was ignored"));
    }
  }
}

// What one rope dict means, with the top-level rope_theta / partial_rotary_factor as the
// fallbacks transformers uses.
struct Rope {
  double theta = 10000.0;
  ir::RopeScaling scaling;
  bool operator==(const Rope& o) const {
    return theta == o.theta && scaling.type == o.scaling.type &&
           scaling.factor == o.scaling.factor &&
           scaling.low_freq_factor == o.scaling.low_freq_factor &&
           scaling.high_freq_factor == o.scaling.high_freq_factor &&
           scaling.original_max_position == o.scaling.original_max_position;
  }
};

// One rope dict, in either layout: transformers 4's rope_scaling ({"type"|"rope_type", "factor",
// ...}; rope_theta beside it) or transformers 5's rope_parameters ({"rope_type", "rope_theta",
// "factor", ...}).
absl::StatusOr<Rope> ParseRopeDict(const Reader& r, double top_theta, double top_partial,
                                   int64_t max_position, std::vector<std::string>* warnings) {
  Rope rope;
  KVCC_ASSIGN_OR_RETURN(rope.theta, r.Float("rope_theta", 0.0, true, 1e12, top_theta));
  double partial = 1.0;
  KVCC_ASSIGN_OR_RETURN(partial, r.Float("partial_rotary_factor", 0.0, true, 1.0, top_partial));
  if (partial != 1.0) {
    const bool here = r.Has("partial_rotary_factor");
    return absl::InvalidArgumentError(absl::StrCat(
        r.file(), ": key '", here ? r.Key("partial_rotary_factor") : "partial_rotary_factor",
        "' is ", partial, ", expected 1.0 (partial rotary embeddings are not supported)"));
  }
  // transformers prefers rope_type and falls back to the legacy `type`, then "default".
  const char* type_key = r.Has("rope_type") || !r.Has("type") ? "rope_type" : "type";
  std::string type;
  KVCC_ASSIGN_OR_RETURN(type, r.String(type_key, std::string("default")));
  std::set<std::string> known = {"rope_type", "type", "rope_theta", "partial_rotary_factor"};
  ir::RopeScaling& s = rope.scaling;
  if (type == "default") {
    // Nothing to scale.
  } else if (type == "linear" || type == "dynamic") {
    s.type = type;
    known.insert("factor");
    KVCC_ASSIGN_OR_RETURN(s.factor, r.Float("factor", 0.0, true, 1e6));
    // transformers' dynamic NTK rescales from max_position_embeddings (it ignores an
    // original_max_position_embeddings here).
    if (type == "dynamic") s.original_max_position = max_position;
  } else if (type == "llama3") {
    s.type = type;
    known.insert({"factor", "low_freq_factor", "high_freq_factor",
                  "original_max_position_embeddings"});
    KVCC_ASSIGN_OR_RETURN(s.factor, r.Float("factor", 0.0, true, 1e6));
    KVCC_ASSIGN_OR_RETURN(s.low_freq_factor, r.Float("low_freq_factor", 0.0, true, 1e6));
    KVCC_ASSIGN_OR_RETURN(s.high_freq_factor, r.Float("high_freq_factor", 0.0, true, 1e6));
    KVCC_ASSIGN_OR_RETURN(s.original_max_position,
                          r.Int("original_max_position_embeddings", 1, kMaxPosition));
    if (s.high_freq_factor <= s.low_freq_factor) {
      return r.Bad("high_freq_factor", r.At("high_freq_factor"),
                   absl::StrCat("a number greater than low_freq_factor (", s.low_freq_factor,
                                ")"));
    }
  } else {
    // yarn needs mscale-scaled cos/sin (attention_factor) and ramped frequencies, longrope
    // length-dependent factor lists: neither is in kvcc's rotary kernels.
    return r.Bad(type_key, r.At(type_key),
                 "one of \"default\", \"linear\", \"dynamic\", \"llama3\" (kvcc's rotary "
                 "embedding does not implement this rope type)");
  }
  WarnUnknownKeys(r, known, warnings);
  return rope;
}

// The per-layer attention kinds transformers 5 writes as `layer_types`; empty when absent.
absl::StatusOr<std::vector<std::string>> LayerTypes(const Reader& r, int64_t num_layers) {
  std::vector<std::string> types;
  if (!r.Has("layer_types")) return types;
  const Json& v = r.At("layer_types");
  const std::string expected =
      absl::StrCat("a list of ", num_layers,
                   " layer types, each \"full_attention\" or \"sliding_attention\"");
  if (!v.is_array() || static_cast<int64_t>(v.size()) != num_layers) {
    return r.Bad("layer_types", v, expected);
  }
  for (const Json& t : v) {
    if (!t.is_string() ||
        (t.get<std::string>() != "full_attention" && t.get<std::string>() != "sliding_attention")) {
      return r.Bad("layer_types", v, expected);
    }
    types.push_back(t.get<std::string>());
  }
  return types;
}

// rope_scaling (transformers 4; transformers 5 still reads it first) else rope_parameters
// (transformers 5), nested per layer type when its keys are layer types of `layer_types`.
absl::Status ParseRope(const Reader& top, const std::vector<std::string>& layer_types,
                       ir::ModelConfig* c, std::vector<std::string>* warnings) {
  double top_theta = 10000.0, top_partial = 1.0;
  KVCC_ASSIGN_OR_RETURN(top_theta, top.Float("rope_theta", 0.0, true, 1e12, 10000.0));
  KVCC_ASSIGN_OR_RETURN(top_partial, top.Float("partial_rotary_factor", 0.0, true, 1.0, 1.0));
  const char* key = top.Has("rope_scaling") ? "rope_scaling" : "rope_parameters";
  Rope rope;
  if (!top.Has(key)) {
    // No dict: the top-level values alone (an empty reader supplies the fallbacks).
    static const Json kEmpty = Json::object();
    KVCC_ASSIGN_OR_RETURN(rope, ParseRopeDict(Reader(kEmpty, top.file(), top.Key(key) + "."),
                                              top_theta, top_partial, c->max_position, warnings));
  } else {
    KVCC_ASSIGN_OR_RETURN(Reader dict, top.Object(key));
    std::vector<std::string> nested;
    for (const std::string& t : layer_types) {
      if (dict.json().contains(t) && std::find(nested.begin(), nested.end(), t) == nested.end()) {
        nested.push_back(t);
      }
    }
    if (nested.empty()) {
      KVCC_ASSIGN_OR_RETURN(rope, ParseRopeDict(dict, top_theta, top_partial, c->max_position,
                                                warnings));
    } else {
      // Every layer type the model uses needs its dict, and kvcc has one rope for all layers.
      for (const std::string& t : layer_types) {
        if (std::find(nested.begin(), nested.end(), t) == nested.end()) {
          return dict.Missing(t.c_str(), "the rope parameters of this layer type");
        }
      }
      for (size_t i = 0; i < nested.size(); ++i) {
        const char* t = nested[i].c_str();
        if (!dict.Has(t)) return dict.Bad(t, dict.At(t), "an object (layers without rope are "
                                                         "not supported)");
        KVCC_ASSIGN_OR_RETURN(Reader layer, dict.Object(t));
        KVCC_ASSIGN_OR_RETURN(Rope r, ParseRopeDict(layer, top_theta, top_partial,
                                                    c->max_position, warnings));
        if (i == 0) {
          rope = r;
        } else if (!(r == rope)) {
          return dict.Bad(t, dict.At(t),
                          absl::StrCat("the same rope parameters as '", dict.Key(nested[0].c_str()),
                                       "' (per-layer rotary embeddings are not supported)"));
        }
      }
    }
  }
  c->rope_theta = rope.theta;
  c->rope_scaling = rope.scaling;
  return absl::OkStatus();
}

// InternLM (v1) keeps its rope settings in `rotary`: {"base": theta, "type": origin|dynamic,
// "scaling_factor": f}.
absl::Status ParseInternLMRotary(const Reader& top, ir::ModelConfig* c) {
  KVCC_ASSIGN_OR_RETURN(Reader r, top.Object("rotary"));
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

// Sliding-window attention equals full attention while a session is no longer than the window.
// When every layer slides (Mistral; Qwen2 with max_window_layers 0) the usable context is
// capped at the window, which keeps the model exact; a window on only some layers, shorter than
// the context, is refused.
absl::Status ParseSlidingWindow(const Reader& r, Arch arch, const std::vector<std::string>& types,
                                ir::ModelConfig* c) {
  int64_t sliding_layers = 0;
  const char* key = "layer_types";
  if (arch == Arch::kMistral) {
    if (r.Has("sliding_window")) sliding_layers = c->num_layers;
    key = "sliding_window";
  } else if (arch == Arch::kQwen2) {
    bool use = false;
    KVCC_ASSIGN_OR_RETURN(use, r.Bool("use_sliding_window", false));
    int64_t max_window_layers = 0;
    KVCC_ASSIGN_OR_RETURN(max_window_layers, r.Int("max_window_layers", 0, kMaxLayers, 28));
    if (use && r.Has("sliding_window")) {
      sliding_layers = types.empty() ? std::max<int64_t>(0, c->num_layers - max_window_layers)
                                     : std::count(types.begin(), types.end(), "sliding_attention");
    }
    key = "use_sliding_window";
  } else {
    sliding_layers = std::count(types.begin(), types.end(), "sliding_attention");
  }
  if (sliding_layers == 0) return absl::OkStatus();
  if (!r.Has("sliding_window")) {
    return r.Bad(key, r.At(key), "no sliding layers when sliding_window is not given");
  }
  int64_t window = 0;
  KVCC_ASSIGN_OR_RETURN(window, r.Int("sliding_window", 1, kMaxPosition));
  if (window >= c->max_position) return absl::OkStatus();
  if (sliding_layers < c->num_layers) {
    return r.Bad(key, r.At(key),
                 absl::StrCat("no sliding-window layers with a window (", window,
                              ") shorter than max_position_embeddings (", c->max_position,
                              "): ", sliding_layers, " of ", c->num_layers,
                              " layers would slide, which kvcc does not support"));
  }
  if (c->rope_scaling.type == "dynamic") {
    return r.Bad("sliding_window", r.At("sliding_window"),
                 "null or >= max_position_embeddings with dynamic rope scaling");
  }
  c->max_position = window;
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
  KVCC_ASSIGN_OR_RETURN(c.tie_embeddings, r.Bool("tie_word_embeddings", false));
  KVCC_ASSIGN_OR_RETURN(c.weight_dtype, TorchDType(r));
  KVCC_ASSIGN_OR_RETURN(std::vector<int64_t> bos, ReadTokenIds(r, "bos_token_id", c.vocab_size));
  c.bos_token_id = bos.empty() ? -1 : bos.front();
  KVCC_ASSIGN_OR_RETURN(c.eos_token_ids, ReadTokenIds(r, "eos_token_id", c.vocab_size));

  for (const UnsupportedKey& u : kUnsupportedKeys) {
    if (j.contains(u.key) && !IsNeutral(j.at(u.key), u.neutral)) {
      return r.Bad(u.key, j.at(u.key),
                   absl::StrCat(NeutralName(u.neutral), " (kvcc does not implement ", u.what, ")"));
    }
  }

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
    case Arch::kQwen2:
      c.qkv_bias = true;
      break;
    case Arch::kInternLM:
    case Arch::kInternLM2:
      // Both configuration classes default `bias` to true.
      KVCC_ASSIGN_OR_RETURN(c.qkv_bias, r.Bool("bias", true));
      c.o_bias = c.qkv_bias;
      break;
  }

  KVCC_ASSIGN_OR_RETURN(std::vector<std::string> layer_types, LayerTypes(r, c.num_layers));
  if (*arch == Arch::kInternLM && r.Has("rotary")) {
    KVCC_RETURN_IF_ERROR(ParseInternLMRotary(r, &c));
  } else {
    KVCC_RETURN_IF_ERROR(ParseRope(r, layer_types, &c, &c.warnings));
  }
  KVCC_RETURN_IF_ERROR(ParseSlidingWindow(r, *arch, layer_types, &c));

  std::set<std::string> known(std::begin(kReadKeys), std::end(kReadKeys));
  known.insert(std::begin(kHarmlessKeys), std::end(kHarmlessKeys));
  for (const UnsupportedKey& u : kUnsupportedKeys) known.insert(u.key);
  for (const char* key : ArchKeys(*arch)) known.insert(key);
  WarnUnknownKeys(r, known, &c.warnings);
  return c;
}

}  // namespace

absl::StatusOr<std::vector<int64_t>> ReadTokenIds(const ir::JsonReader& r, const char* key,
                                                  int64_t vocab) {
  std::vector<int64_t> ids;
  if (!r.Has(key)) return ids;
  const Json& v = r.At(key);
  const std::string expected = absl::StrCat("a token id in [0, ", vocab, ") or a list of them");
  if (v.is_array() && v.size() > static_cast<size_t>(vocab)) return r.Bad(key, v, expected);
  for (const Json& id : v.is_array() ? v : Json::array({v})) {
    bool in_vocab = false;
    if (id.is_number_unsigned()) {
      in_vocab = id.get<uint64_t>() < static_cast<uint64_t>(vocab);
    } else if (id.is_number_integer()) {
      in_vocab = id.get<int64_t>() >= 0 && id.get<int64_t>() < vocab;
    }
    if (!in_vocab) return r.Bad(key, v, expected);
    const int64_t x = id.get<int64_t>();
    if (std::find(ids.begin(), ids.end(), x) == ids.end()) ids.push_back(x);
  }
  return ids;
}

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
