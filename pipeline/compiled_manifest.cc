#include "pipeline/compiled_manifest.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "ir/artifact_manifest.h"
#include "ir/file_read.h"
#include "ir/json_reader.h"
#include "ir/status_macros.h"
#include "ir/xxhash64.h"

namespace kvcc::pipeline {
namespace {

constexpr char kFormat[] = "kvcc-compiled-artifact";
constexpr int kVersion = 1;
constexpr int64_t kMaxFileBytes = int64_t{1} << 32;
constexpr char kRecompile[] = " (re-run `kvcc compile` to rebuild the artifact)";

// "kernels/x.cubin": relative, no empty, "." or ".." component, printable ASCII.
bool IsInsidePath(absl::string_view path) {
  if (path.empty() || path.size() > 400 || path.front() == '/') return false;
  for (char c : path) {
    if (c <= ' ' || c > '~' || c == '\\') return false;
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

absl::StatusOr<std::vector<std::string>> StringList(const ir::JsonReader& r, const char* key) {
  if (!r.Has(key) || !r.At(key).is_array()) return r.Missing(key, "an array of strings");
  std::vector<std::string> out;
  for (const ir::Json& v : r.At(key)) {
    if (!v.is_string()) return r.Bad(key, r.At(key), "an array of strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

}  // namespace

std::string CompiledManifestToJson(const CompiledManifest& m) {
  nlohmann::ordered_json files = nlohmann::ordered_json::object();
  for (const auto& [name, d] : m.files) {
    files[name] = {{"bytes", d.bytes}, {"xxh64", ir::Xxh64Hex(d.xxh64)}};
  }
  nlohmann::ordered_json options = nlohmann::ordered_json::object();
  for (const auto& [k, v] : m.options) options[k] = v;
  nlohmann::ordered_json j = {{"format", kFormat},
                              {"version", kVersion},
                              {"kvcc_version", m.kvcc_version},
                              {"source", m.source},
                              {"source_fingerprint", m.source_fingerprint},
                              {"kv_scheme", m.kv_scheme},
                              {"w4_layout", m.w4_layout},
                              {"arches", m.arches},
                              {"options", options},
                              {"files", files}};
  return j.dump(1) + "\n";
}

absl::StatusOr<CompiledManifest> ParseCompiledManifest(absl::string_view text,
                                                       const std::string& source) {
  KVCC_ASSIGN_OR_RETURN(ir::Json j, ir::ParseArtifactJson(text, source, kFormat, kVersion, 4,
                                                          1 << 22));
  ir::JsonReader top(j, source);
  CompiledManifest m;
  KVCC_ASSIGN_OR_RETURN(m.kvcc_version, top.String("kvcc_version"));
  if (m.kvcc_version != kKvccVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        source, ": the artifact was written by kvcc ", m.kvcc_version, " and this is kvcc ",
        kKvccVersion, "; its graph and kernels may mean something else here", kRecompile));
  }
  KVCC_ASSIGN_OR_RETURN(m.source, top.String("source"));
  KVCC_ASSIGN_OR_RETURN(m.source_fingerprint, top.String("source_fingerprint"));
  KVCC_ASSIGN_OR_RETURN(m.kv_scheme, top.String("kv_scheme"));
  KVCC_ASSIGN_OR_RETURN(m.w4_layout, top.String("w4_layout"));
  KVCC_ASSIGN_OR_RETURN(m.arches, StringList(top, "arches"));
  KVCC_ASSIGN_OR_RETURN(ir::JsonReader options, top.Object("options"));
  for (const auto& [k, v] : options.json().items()) {
    if (!v.is_string()) return options.Bad(k.c_str(), v, "a string");
    m.options[k] = v.get<std::string>();
  }
  KVCC_ASSIGN_OR_RETURN(ir::JsonReader files, top.Object("files"));
  for (const auto& [name, v] : files.json().items()) {
    if (!IsInsidePath(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": files lists '", name, "', expected a relative path inside the artifact"));
    }
    if (!v.is_object()) return files.Bad(name.c_str(), v, "an object {bytes, xxh64}");
    ir::JsonReader f(v, source, absl::StrCat("files.", name, "."));
    FileDigest d;
    KVCC_ASSIGN_OR_RETURN(d.bytes, f.Int("bytes", 0, std::numeric_limits<int64_t>::max()));
    KVCC_ASSIGN_OR_RETURN(std::string hex, f.String("xxh64"));
    if (!ir::ParseXxh64Hex(hex, &d.xxh64)) {
      return f.Bad("xxh64", f.At("xxh64"), "16 lowercase hex digits");
    }
    m.files[name] = d;
  }
  return m;
}

absl::StatusOr<FileDigest> DigestFile(const std::string& dir, const std::string& relative) {
  KVCC_ASSIGN_OR_RETURN(std::string bytes,
                        ir::ReadRegularFile(absl::StrCat(dir, "/", relative), kMaxFileBytes,
                                            "artifact file"));
  return FileDigest{static_cast<int64_t>(bytes.size()), ir::Xxh64Hash(bytes.data(), bytes.size())};
}

absl::Status VerifyFiles(const CompiledManifest& m, const std::string& dir) {
  for (const auto& [name, want] : m.files) {
    const std::string path = absl::StrCat(dir, "/", name);
    absl::StatusOr<FileDigest> got = DigestFile(dir, name);
    if (!got.ok()) {
      return absl::DataLossError(absl::StrCat(path, " (listed in ", kCompiledManifestName,
                                              ") cannot be read: ", got.status().message(),
                                              kRecompile));
    }
    if (got->bytes != want.bytes || got->xxh64 != want.xxh64) {
      return absl::DataLossError(absl::StrCat(
          path, " is ", got->bytes, " bytes with XXH64 ", ir::Xxh64Hex(got->xxh64), " but ",
          kCompiledManifestName, " records ", want.bytes, " bytes with XXH64 ",
          ir::Xxh64Hex(want.xxh64), ": the file is damaged or edited", kRecompile));
    }
  }
  return absl::OkStatus();
}

}  // namespace kvcc::pipeline
