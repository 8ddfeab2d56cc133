#include "frontend/model_loader.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "ir/atomic_file.h"
#include "frontend/hf_config.h"
#include "frontend/hf_importer.h"
#include "ir/onnx_io.h"
#include "ir/status_macros.h"
#include "ir/verifier.h"

namespace kvcc::frontend {
namespace {
namespace fs = std::filesystem;

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

absl::StatusOr<std::unique_ptr<ir::Module>> LoadModel(const std::string& path) {
  auto kind = ClassifyModelDir(path);
  if (!kind.ok()) return kind.status();
  if (*kind == ModelDirKind::kArtifact) return ir::ReadOnnx(path);
  return ImportHfCheckpoint(path);
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
    std::ifstream in(src, std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    if (!in.good() && !in.eof()) {
      return absl::InternalError(absl::StrCat(src.string(), ": read failed"));
    }
    const std::string text = bytes.str();
    KVCC_RETURN_IF_ERROR(ir::WriteFileAtomically((fs::path(to) / name).string(), text));
    copied.push_back(name);
  }
  return copied;
}

absl::StatusOr<std::unique_ptr<ir::Module>> ImportToArtifact(const std::string& hf_dir,
                                                             const std::string& out_dir) {
  auto kind = ClassifyModelDir(hf_dir);
  if (!kind.ok()) return kind.status();
  if (*kind != ModelDirKind::kHfCheckpoint) {
    return absl::InvalidArgumentError(
        absl::StrCat(hf_dir, ": is already a kvcc artifact, not a Hugging Face checkpoint"));
  }
  std::error_code ec;
  if (fs::equivalent(hf_dir, out_dir, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(
        out_dir, ": the artifact directory must differ from the checkpoint directory ", hf_dir));
  }
  auto module = ImportHfCheckpoint(hf_dir);
  if (!module.ok()) return module.status();
  KVCC_RETURN_IF_ERROR(ir::Verify(**module));
  fs::create_directories(out_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat(out_dir, ": cannot create directory: ", ec.message()));
  }
  KVCC_RETURN_IF_ERROR(ir::WriteOnnx(**module, out_dir));
  auto copied = CopyModelSideFiles(hf_dir, out_dir);
  if (!copied.ok()) return copied.status();
  return module;
}

}  // namespace kvcc::frontend
