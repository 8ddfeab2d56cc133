#include "frontend/generation_config.h"

#include <cstdint>
#include <filesystem>
#include <limits>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "frontend/hf_config.h"
#include "ir/file_read.h"
#include "ir/json_reader.h"
#include "ir/status_macros.h"

namespace kvcc::frontend {
namespace {
constexpr size_t kMaxGenerationConfigBytes = 1 << 20;
}  // namespace

absl::StatusOr<GenerationConfig> ParseGenerationConfig(absl::string_view json_text,
                                                       absl::string_view file, int64_t vocab) {
  const std::string name(file);
  if (json_text.size() > kMaxGenerationConfigBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": ", json_text.size(), " bytes is too large for a generation_config.json"));
  }
  KVCC_ASSIGN_OR_RETURN(ir::Json j, ir::ParseJson(json_text, name));
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": expected a JSON object, got ", ir::ShowJson(j)));
  }
  ir::JsonReader r(j, name);
  GenerationConfig g;
  g.file = name;
  KVCC_ASSIGN_OR_RETURN(g.eos_token_ids, ReadTokenIds(r, "eos_token_id", vocab));
  if (r.Has("do_sample")) {
    KVCC_ASSIGN_OR_RETURN(g.do_sample, r.Bool("do_sample"));
  }
  if (r.Has("temperature")) {
    KVCC_ASSIGN_OR_RETURN(g.temperature, r.Float("temperature", 0, false, 1e6));
  }
  if (r.Has("top_k")) {
    KVCC_ASSIGN_OR_RETURN(g.top_k, r.Int("top_k", 0, std::numeric_limits<int32_t>::max()));
  }
  if (r.Has("top_p")) {
    KVCC_ASSIGN_OR_RETURN(g.top_p, r.Float("top_p", 0, true, 1));
  }
  if (r.Has("repetition_penalty")) {
    KVCC_ASSIGN_OR_RETURN(g.repetition_penalty, r.Float("repetition_penalty", 0, true, 1e6));
  }
  return g;
}

absl::StatusOr<std::optional<GenerationConfig>> LoadGenerationConfig(const std::string& model_path,
                                                                     int64_t vocab) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path dir = model_path;
  if (!fs::is_directory(dir, ec)) dir = dir.parent_path();
  const fs::path file = dir / kGenerationConfigFileName;
  if (!fs::exists(file, ec)) return std::optional<GenerationConfig>();
  KVCC_ASSIGN_OR_RETURN(std::string text, ir::ReadRegularFile(file.string(),
                                                              kMaxGenerationConfigBytes,
                                                              "generation config"));
  KVCC_ASSIGN_OR_RETURN(GenerationConfig g, ParseGenerationConfig(text, file.string(), vocab));
  return std::optional<GenerationConfig>(std::move(g));
}

}  // namespace kvcc::frontend
