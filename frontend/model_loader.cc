#include "frontend/model_loader.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "frontend/hf_config.h"
#include "frontend/hf_importer.h"
#include "ir/atomic_dir.h"
#include "ir/atomic_file.h"
#include "ir/file_read.h"
#include "ir/onnx_io.h"
#include "ir/status_macros.h"
#include "ir/verifier.h"

namespace kvcc::frontend {
namespace {
namespace fs = std::filesystem;

// Far above any real tokenizer.json; a cap so a huge or endless file cannot exhaust memory.
constexpr int64_t kMaxSideFileBytes = int64_t{1} << 30;

bool IsFile(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

}  // namespace

absl::StatusOr<ModelDirKind> ClassifyModelDir(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat(dir, ": not a directory (expected a kvcc artifact or ",
                                            "a Hugging Face checkpoint directory)"));
  }
  if (IsFile(fs::path(dir) / ir::kOnnxFileName)) return ModelDirKind::kArtifact;
  if (IsFile(fs::path(dir) / kHfConfigFileName)) return ModelDirKind::kHfCheckpoint;
  return absl::NotFoundError(absl::StrCat(dir, ": neither ", ir::kOnnxFileName,
                                          " (kvcc artifact) nor ", kHfConfigFileName,
                                          " (Hugging Face checkpoint) found"));
}

absl::StatusOr<std::unique_ptr<ir::Module>> LoadModel(const std::string& path,
                                                      ModelFormat format,
                                                      const ir::ReadOnnxOptions& read) {
  KVCC_ASSIGN_OR_RETURN(auto kind, ClassifyModelDir(path));
  if (kind == ModelDirKind::kHfCheckpoint) return ImportHfCheckpoint(path, format);
  KVCC_ASSIGN_OR_RETURN(auto module, ir::ReadOnnx(path, read));
  // The importer records a quantized source's format; an artifact without it has float weights.
  auto it = module->metadata.find("model_format");
  const std::string held = it == module->metadata.end() ? "hf" : it->second;
  if (format != ModelFormat::kAuto && held != ModelFormatName(format)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": --model-format ",
                                                   ModelFormatName(format),
                                                   " but the artifact was imported from a ",
                                                   held, " checkpoint"));
  }
  return module;
}

absl::StatusOr<std::string> FindTokenizerDir(const std::string& model_path) {
  std::error_code ec;
  fs::path dir = model_path;
  if (fs::is_regular_file(dir, ec)) dir = dir.parent_path();
  for (const char* name : {"tokenizer.model", "tokenizer.json"}) {
    if (IsFile(dir / name)) return dir.string();
  }
  return absl::NotFoundError(absl::StrCat(
      dir.string(), ": no tokenizer.model or tokenizer.json (a checkpoint ships them; `kvcc ",
      "import` copies them into the artifact)"));
}

absl::StatusOr<std::vector<std::string>> CopyModelSideFiles(const std::string& from,
                                                            const std::string& to) {
  std::vector<std::string> copied;
  for (const char* name : kModelSideFiles) {
    const fs::path src = fs::path(from) / name;
    if (!IsFile(src)) continue;
    KVCC_ASSIGN_OR_RETURN(std::string bytes, ir::ReadRegularFile(src.string(), kMaxSideFileBytes,
                                                                 "model side file"));
    KVCC_RETURN_IF_ERROR(ir::WriteFileAtomically((fs::path(to) / name).string(), bytes));
    copied.push_back(name);
  }
  return copied;
}

absl::StatusOr<std::unique_ptr<ir::Module>> ImportToArtifact(const std::string& hf_dir,
                                                             const std::string& out_dir,
                                                             ModelFormat format) {
  KVCC_ASSIGN_OR_RETURN(auto kind, ClassifyModelDir(hf_dir));
  if (kind != ModelDirKind::kHfCheckpoint) {
    return absl::InvalidArgumentError(
        absl::StrCat(hf_dir, ": is already a kvcc artifact, not a Hugging Face checkpoint"));
  }
  std::error_code ec;
  if (fs::equivalent(hf_dir, out_dir, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(
        out_dir, ": the artifact directory must differ from the checkpoint directory ", hf_dir));
  }
  // Refuses an unrelated non-empty out_dir before the (long) import.
  KVCC_ASSIGN_OR_RETURN(std::unique_ptr<ir::AtomicDirectory> out,
                        ir::AtomicDirectory::Create(out_dir, ir::kOnnxFileName));
  KVCC_ASSIGN_OR_RETURN(auto module, ImportHfCheckpoint(hf_dir, format));
  KVCC_RETURN_IF_ERROR(ir::Verify(*module));
  KVCC_RETURN_IF_ERROR(ir::WriteOnnx(*module, out->path()));
  KVCC_RETURN_IF_ERROR(CopyModelSideFiles(hf_dir, out->path()).status());
  // Replaces the whole directory: files of an earlier import (or its kv_params.json) go too.
  KVCC_RETURN_IF_ERROR(out->Commit());
  return module;
}

}  // namespace kvcc::frontend
