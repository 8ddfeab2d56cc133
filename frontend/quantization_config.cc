#include "frontend/quantization_config.h"

#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "frontend/hf_config.h"
#include "ir/status_macros.h"

namespace kvcc::frontend {
namespace {

// Keys of quantization_config that are read below or carry nothing the import needs.
constexpr const char* kIgnoredKeys[] = {
    "quant_method", "bits", "w_bit", "group_size", "q_group_size", "zero_point", "version",
    "modules_to_not_convert", "sym", "desc_act", "checkpoint_format", "static_groups",
    "true_sequential", "damp_percent", "damp_auto_increment", "model_name_or_path",
    "model_file_base_name", "is_marlin_format", "quantizer", "pack_dtype", "lm_head",
    "meta", "backend", "use_exllama", "exllama_config", "use_cuda_fp16", "dataset",
    "tokenizer", "batch_size", "pad_token_id", "cache_block_outputs", "module_name_preceding_first_block",
    "modules_in_block_to_quantize", "max_input_length", "use_marlin", "do_fuse", "fuse_max_seq_len",
    "modules_to_fuse"};

absl::StatusOr<std::vector<std::string>> StringList(const ir::JsonReader& r, const char* key) {
  std::vector<std::string> out;
  if (!r.Has(key)) return out;
  const ir::Json& v = r.At(key);
  if (!v.is_array()) return r.Bad(key, v, "a list of module names or null");
  for (const ir::Json& e : v) {
    if (!e.is_string() || e.get<std::string>().empty()) {
      return r.Bad(key, v, "a list of non-empty module names");
    }
    out.push_back(e.get<std::string>());
  }
  return out;
}

absl::StatusOr<QuantizationConfig> ParseAwq(const ir::JsonReader& r) {
  QuantizationConfig q;
  q.format = ModelFormat::kAwq;
  KVCC_ASSIGN_OR_RETURN(std::string version, r.String("version", std::string("gemm")));
  if (absl::AsciiStrToLower(version) != "gemm") {
    return r.Bad("version", r.At("version"),
                 "\"gemm\" (the AutoAWQ GEMM packing; gemv/marlin/exllama pack differently)");
  }
  const char* bits_key = r.Has("w_bit") ? "w_bit" : "bits";
  KVCC_ASSIGN_OR_RETURN(int64_t bits, r.Int(bits_key, 0, 64, int64_t{4}));
  if (bits != 4) return r.Bad(bits_key, r.At(bits_key), "4 (only 4-bit AWQ is supported)");
  q.bits = 4;
  const char* group_key = r.Has("q_group_size") ? "q_group_size" : "group_size";
  KVCC_ASSIGN_OR_RETURN(q.group_size, r.Int(group_key, 2, int64_t{1} << 20));
  if (q.group_size % 8 != 0) {
    return r.Bad(group_key, r.At(group_key), "a multiple of 8 (32, 64, 128, ...)");
  }
  KVCC_ASSIGN_OR_RETURN(q.zero_point, r.Bool("zero_point", true));
  if (!q.zero_point) {
    return r.Bad("zero_point", r.At("zero_point"), "true (AutoAWQ GEMM checkpoints are asymmetric)");
  }
  KVCC_ASSIGN_OR_RETURN(q.modules_to_not_convert, StringList(r, "modules_to_not_convert"));
  return q;
}

absl::StatusOr<QuantizationConfig> ParseGptq(const ir::JsonReader& r) {
  QuantizationConfig q;
  q.format = ModelFormat::kGptq;
  KVCC_ASSIGN_OR_RETURN(int64_t bits, r.Int("bits", 0, 64));
  if (bits != 4) return r.Bad("bits", r.At("bits"), "4 (only 4-bit GPTQ is supported)");
  q.bits = 4;
  KVCC_ASSIGN_OR_RETURN(int64_t group, r.Int("group_size", -1, int64_t{1} << 20, int64_t{128}));
  if (group == -1) {
    q.group_size = 0;
  } else if (group < 8 || group % 8 != 0) {
    return r.Bad("group_size", r.At("group_size"), "-1 or a multiple of 8 (32, 64, 128, ...)");
  } else {
    q.group_size = group;
  }
  KVCC_ASSIGN_OR_RETURN(bool desc_act, r.Bool("desc_act", false));
  if (desc_act) {
    return r.Bad("desc_act", r.At("desc_act"),
                 "false (act-order GPTQ permutes input channels through g_idx, which kvcc does "
                 "not support; requantize with desc_act false)");
  }
  KVCC_ASSIGN_OR_RETURN(bool sym, r.Bool("sym", true));
  q.zero_point = !sym;
  KVCC_ASSIGN_OR_RETURN(std::string format, r.String("checkpoint_format", std::string("gptq")));
  if (format == "gptq") {
    q.zeros_minus_one = true;
  } else if (format != "gptq_v2") {
    return r.Bad("checkpoint_format", r.At("checkpoint_format"), "\"gptq\" or \"gptq_v2\"");
  }
  KVCC_ASSIGN_OR_RETURN(q.modules_to_not_convert, StringList(r, "modules_to_not_convert"));
  return q;
}

}  // namespace

absl::StatusOr<ModelFormat> ParseModelFormat(absl::string_view name) {
  if (name.empty() || name == "auto") return ModelFormat::kAuto;
  if (name == "hf") return ModelFormat::kHf;
  if (name == "awq") return ModelFormat::kAwq;
  if (name == "gptq") return ModelFormat::kGptq;
  return absl::InvalidArgumentError(
      absl::StrCat("--model-format '", name, "': expected awq, gptq or hf (or none: detected)"));
}

absl::string_view ModelFormatName(ModelFormat format) {
  switch (format) {
    case ModelFormat::kAuto: return "auto";
    case ModelFormat::kHf: return "hf";
    case ModelFormat::kAwq: return "awq";
    case ModelFormat::kGptq: return "gptq";
  }
  return "auto";
}

bool QuantizationConfig::Converts(absl::string_view module) const {
  if (!quantized()) return false;
  for (const std::string& skip : modules_to_not_convert) {
    if (absl::StrContains(module, skip)) return false;
  }
  return true;
}

absl::StatusOr<QuantizationConfig> ParseQuantizationConfig(const ir::Json& config,
                                                           const std::string& file) {
  ir::JsonReader top(config, file);
  if (!top.Has("quantization_config")) return QuantizationConfig{};
  KVCC_ASSIGN_OR_RETURN(ir::JsonReader r, top.Object("quantization_config"));
  for (const auto& [key, value] : r.json().items()) {
    bool known = false;
    for (const char* k : kIgnoredKeys) known |= key == k;
    if (!known) {
      return r.Bad(key.c_str(), value, "absent (a quantization_config key kvcc does not know; "
                                       "the weights may be packed in a way it would misread)");
    }
  }
  KVCC_ASSIGN_OR_RETURN(std::string method, r.String("quant_method"));
  method = absl::AsciiStrToLower(method);
  if (method == "awq") return ParseAwq(r);
  if (method == "gptq") return ParseGptq(r);
  return r.Bad("quant_method", r.At("quant_method"), "\"awq\" or \"gptq\"");
}

absl::StatusOr<QuantizationConfig> LoadQuantizationConfig(const std::string& dir,
                                                          ModelFormat requested) {
  const std::string file = (std::filesystem::path(dir) / kHfConfigFileName).string();
  KVCC_ASSIGN_OR_RETURN(ir::Json j, ir::ReadJsonFile(file, {}, "config"));
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": expected a JSON object"));
  }
  KVCC_ASSIGN_OR_RETURN(QuantizationConfig q, ParseQuantizationConfig(j, file));
  if (requested != ModelFormat::kAuto && requested != q.format) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, ": --model-format ", ModelFormatName(requested), " but ", file, " describes ",
        q.quantized() ? absl::StrCat(ModelFormatName(q.format), "-quantized weights (",
                                     "quantization_config.quant_method)")
                      : std::string("float weights (no quantization_config)")));
  }
  return q;
}

}  // namespace kvcc::frontend
