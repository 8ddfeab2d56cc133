#include "frontend/model_summary.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "frontend/hf_config.h"
#include "frontend/hf_importer.h"
#include "ir/kv_cache_scheme.h"
#include "ir/onnx_io.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"

namespace kvcc::frontend {
namespace {
namespace fs = std::filesystem;

std::string Trimmed(double x) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.2f", x);
  std::string s = buf;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

std::string FormatCount(int64_t n) {
  if (n >= 500'000'000) return Trimmed(n / 1e9) + " B";
  if (n >= 500'000) return Trimmed(n / 1e6) + " M";
  if (n >= 500) return Trimmed(n / 1e3) + " K";
  return std::to_string(n);
}

std::string IdList(const std::vector<int64_t>& ids) {
  return ids.empty() ? "none" : absl::StrJoin(ids, ", ");
}

// What generate and chat use when no sampling flag is given (tools/text_model.h).
std::string GenerationDefaults(const std::optional<GenerationConfig>& g) {
  if (!g.has_value()) return "none (no generation_config.json)";
  std::string out = g->do_sample.value_or(false) ? "sampling" : "greedy";
  if (g->do_sample.value_or(false)) {
    absl::StrAppend(&out, ", temperature ", g->temperature.value_or(1.0), ", top_k ",
                    g->top_k.value_or(50), ", top_p ", g->top_p.value_or(1.0));
  }
  if (g->repetition_penalty.has_value()) {
    absl::StrAppend(&out, ", repetition_penalty ", *g->repetition_penalty);
  }
  absl::StrAppend(&out, "; eos token ids ", IdList(g->eos_token_ids), " (", g->file, ")");
  return out;
}

// Whether a checkpoint directory holds weights kvcc reads.
bool HasSafetensors(const fs::path& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (absl::EndsWith(name, ".safetensors") || name == "model.safetensors.index.json") {
      return true;
    }
  }
  return false;
}

ModelSummary FromConfig(const ir::ModelConfig& config, const std::string& source) {
  ModelSummary s;
  s.source = source;
  s.source_kind = "config.json only";
  s.config = config;
  s.parameters = config.NumParameters();
  s.weight_bytes[config.weight_dtype] = ir::DTypeBytes(config.weight_dtype, s.parameters);
  // What `kvcc import` would produce.
  s.kv_scheme = "f16 (none)";
  return s;
}

// The summary without generation_config.json.
absl::StatusOr<ModelSummary> SummarizeModelFiles(const std::string& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) {
    KVCC_ASSIGN_OR_RETURN(auto config, LoadHfConfig(path));
    return FromConfig(config, path);
  }
  if (!fs::is_directory(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file or directory"));
  }
  if (fs::is_regular_file(fs::path(path) / ir::kOnnxFileName, ec)) {
    KVCC_ASSIGN_OR_RETURN(auto module, ir::ReadOnnx(path));
    return SummarizeModule(*module, path, "kvcc artifact");
  }
  if (!HasSafetensors(path)) {
    KVCC_ASSIGN_OR_RETURN(auto config, LoadHfConfig(path));
    return FromConfig(config, path);
  }
  KVCC_ASSIGN_OR_RETURN(auto module, ImportHfCheckpoint(path));
  return SummarizeModule(*module, path, "hf checkpoint");
}

}  // namespace

std::string FormatBytes(int64_t bytes) {
  constexpr double kKiB = 1024.0, kMiB = kKiB * 1024, kGiB = kMiB * 1024;
  const double b = static_cast<double>(bytes);
  if (b >= kGiB / 2) return Trimmed(b / kGiB) + " GiB";
  if (b >= kMiB / 2) return Trimmed(b / kMiB) + " MiB";
  if (b >= kKiB / 2) return Trimmed(b / kKiB) + " KiB";
  return absl::StrCat(bytes, " B");
}

absl::StatusOr<ModelSummary> SummarizeModule(const ir::Module& module, const std::string& source,
                                             const std::string& source_kind) {
  ModelSummary s;
  s.source = source;
  s.source_kind = source_kind;
  s.config = module.config;
  s.parameters = module.config.NumParameters();
  s.weights_read = true;
  for (const ir::Value* w : module.graph.weights()) {
    s.weight_bytes[w->type.dtype] += static_cast<int64_t>(w->weight->size);
  }
  std::vector<std::string> schemes;
  bool first = true;
  for (const auto& node : module.graph.nodes()) {
    if (node->op != ir::op::kKvCacheWrite) continue;
    KVCC_ASSIGN_OR_RETURN(auto scheme, ir::ReadKvCacheScheme(*node));
    if (first) s.kv_dtype = scheme.dtype;
    first = false;
    std::string text = absl::StrCat(ir::DTypeName(scheme.dtype), " (",
                                    ir::KvGranularityName(scheme.granularity), ")");
    if (std::find(schemes.begin(), schemes.end(), text) == schemes.end()) {
      schemes.push_back(text);
    }
  }
  if (schemes.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": the graph has no kv_cache_write"));
  }
  s.kv_scheme = absl::StrJoin(schemes, ", ");
  return s;
}

absl::StatusOr<ModelSummary> SummarizeModel(const std::string& path) {
  KVCC_ASSIGN_OR_RETURN(ModelSummary s, SummarizeModelFiles(path));
  KVCC_ASSIGN_OR_RETURN(s.generation, LoadGenerationConfig(path, s.config.vocab_size));
  return s;
}

absl::StatusOr<std::string> FormatModelSummary(const ModelSummary& s, int64_t max_len,
                                               std::optional<ir::DType> cache_dtype) {
  if (max_len <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("--max-len must be positive, got ", max_len));
  }
  const ir::ModelConfig& c = s.config;
  if (4.0 * static_cast<double>(c.num_layers) * static_cast<double>(max_len) *
          static_cast<double>(c.num_kv_heads * c.head_dim) >
      1e18) {
    return absl::InvalidArgumentError(absl::StrCat("--max-len ", max_len, " is too large"));
  }
  const ir::DType chosen = cache_dtype.value_or(s.kv_dtype);
  const std::vector<ir::DType> sizes = {ir::DType::kF16, ir::DType::kI8, ir::DType::kI4};
  if (std::find(sizes.begin(), sizes.end(), chosen) == sizes.end()) {
    return absl::InvalidArgumentError(absl::StrCat("--cache-dtype ", ir::DTypeName(chosen),
                                                   " is not one of f16, i8, i4"));
  }
  std::string out;
  absl::StrAppend(&out, "model: ", s.source, " (", s.source_kind, ")\n");
  absl::StrAppend(&out, "architecture: ", c.architecture, "\n");
  absl::StrAppend(&out, "layers: ", c.num_layers, "\n");
  absl::StrAppend(&out, "hidden: ", c.hidden_size, "\n");
  absl::StrAppend(&out, "heads: ", c.num_heads, "\n");
  absl::StrAppend(&out, "kv heads: ", c.num_kv_heads, "\n");
  absl::StrAppend(&out, "head_dim: ", c.head_dim, "\n");
  absl::StrAppend(&out, "intermediate: ", c.intermediate_size, "\n");
  absl::StrAppend(&out, "vocab: ", c.vocab_size, "\n");
  absl::StrAppend(&out, "max position: ", c.max_position, "\n");
  // Thetas are whole numbers in practice; print 1000000 rather than %g's 1e+06.
  const bool whole = c.rope_theta == std::floor(c.rope_theta) && c.rope_theta < 1e15;
  absl::StrAppend(&out, "rope: theta ",
                  whole ? absl::StrCat(static_cast<int64_t>(c.rope_theta))
                        : absl::StrCat(c.rope_theta),
                  ", scaling ", c.rope_scaling.type);
  if (c.rope_scaling.type != "none") absl::StrAppend(&out, " x", c.rope_scaling.factor);
  absl::StrAppend(&out, "\n");
  absl::StrAppend(&out, "tied embeddings: ", c.tie_embeddings ? "yes" : "no", "\n");
  absl::StrAppend(&out, "qkv bias: ", c.qkv_bias ? "yes" : "no", "\n");
  absl::StrAppend(&out, "eos token ids: ", IdList(c.eos_token_ids), "\n");
  absl::StrAppend(&out, "generation defaults: ", GenerationDefaults(s.generation), "\n");
  absl::StrAppend(&out, "parameters: ", s.parameters, " (", FormatCount(s.parameters), ")\n");
  int64_t total = 0;
  for (const auto& [dtype, bytes] : s.weight_bytes) total += bytes;
  if (s.weights_read) {
    absl::StrAppend(&out, "weight bytes:\n");
    for (const auto& [dtype, bytes] : s.weight_bytes) {
      absl::StrAppend(&out, "  ", ir::DTypeName(dtype), ": ", FormatBytes(bytes), " (", bytes,
                      " bytes)\n");
    }
    absl::StrAppend(&out, "  total: ", FormatBytes(total), " (", total, " bytes)\n");
  } else {
    absl::StrAppend(&out, "weight bytes (implied by torch_dtype, no weights read):\n  ",
                    ir::DTypeName(c.weight_dtype), ": ", FormatBytes(total), " (", total,
                    " bytes)\n");
  }
  absl::StrAppend(&out, "kv-cache scheme: ", s.kv_scheme, "\n");
  absl::StrAppend(&out, "kv-cache per session of ", max_len, " tokens");
  if (max_len > c.max_position) {
    absl::StrAppend(&out, " (beyond max position ", c.max_position, ")");
  }
  absl::StrAppend(&out, ":\n");
  for (ir::DType dtype : sizes) {
    const int64_t bytes = c.KvBytesPerSession(max_len, dtype);
    absl::StrAppend(&out, dtype == chosen ? "* " : "  ", ir::DTypeName(dtype), ": ",
                    FormatBytes(bytes), " (", bytes, " bytes)", dtype == chosen ? "  <- selected" : "",
                    "\n");
  }
  return out;
}

}  // namespace kvcc::frontend
