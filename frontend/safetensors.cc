#include "frontend/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ir/json_reader.h"
#include "ir/status_macros.h"

namespace kvcc::frontend {
namespace {

namespace fs = std::filesystem;
using json = ir::Json;

struct DTypeName {
  const char* name;
  ir::DType dtype;
  int bytes;
};
constexpr DTypeName kDTypes[] = {
    {"F32", ir::DType::kF32, 4}, {"F16", ir::DType::kF16, 2}, {"BF16", ir::DType::kBF16, 2},
    {"I32", ir::DType::kI32, 4}, {"I8", ir::DType::kI8, 1},   {"U8", ir::DType::kU8, 1},
};

const DTypeName* FindDType(const std::string& name) {
  for (const DTypeName& d : kDTypes) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

std::string Quoted(absl::string_view s) { return absl::StrCat("'", s, "'"); }

absl::Status TensorError(absl::string_view file, absl::string_view tensor,
                         absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat(file, ": tensor ", Quoted(tensor), ": ", what));
}

// Reads a non-negative integer that fits int64 from a JSON number.
bool AsNonNegative(const json& v, uint64_t* out) {
  if (!v.is_number_unsigned()) return false;
  uint64_t u = v.get<uint64_t>();
  if (u > static_cast<uint64_t>(INT64_MAX)) return false;
  *out = u;
  return true;
}

absl::StatusOr<SafetensorsEntry> ParseEntry(const std::string& name, const json& info,
                                            uint64_t data_size, absl::string_view file) {
  if (!info.is_object()) {
    return TensorError(file, name, "header entry is not a JSON object");
  }
  SafetensorsEntry e;
  e.name = name;

  auto dtype_it = info.find("dtype");
  if (dtype_it == info.end() || !dtype_it->is_string()) {
    return TensorError(file, name, "missing string field \"dtype\"");
  }
  const std::string dtype_name = dtype_it->get<std::string>();
  const DTypeName* dt = FindDType(dtype_name);
  if (dt == nullptr) {
    return TensorError(file, name,
                       absl::StrCat("unsupported dtype ", Quoted(dtype_name),
                                    "; kvcc reads F32 F16 BF16 I32 I8 U8"));
  }
  e.dtype = dt->dtype;

  auto shape_it = info.find("shape");
  if (shape_it == info.end() || !shape_it->is_array()) {
    return TensorError(file, name, "missing array field \"shape\"");
  }
  // Element count with overflow detection: a dimension product beyond 2^62 cannot describe a
  // tensor that fits in any file.
  unsigned __int128 count = 1;
  for (const json& d : *shape_it) {
    if (d.is_number_integer() && !d.is_number_unsigned()) {
      return TensorError(file, name, absl::StrCat("negative dimension ", d.dump(), " in shape ",
                                                  ir::ShowJson(*shape_it)));
    }
    uint64_t dim = 0;
    if (!AsNonNegative(d, &dim)) {
      return TensorError(file, name, absl::StrCat("shape ", ir::ShowJson(*shape_it),
                                                  " has a dimension that is not a "
                                                  "non-negative 64-bit integer"));
    }
    e.shape.push_back(static_cast<int64_t>(dim));
    count *= dim;
    if (count > (static_cast<unsigned __int128>(1) << 62)) {
      return TensorError(file, name, absl::StrCat("shape ", ir::ShowJson(*shape_it), " is too large"));
    }
  }

  auto off_it = info.find("data_offsets");
  if (off_it == info.end() || !off_it->is_array() || off_it->size() != 2) {
    return TensorError(file, name, "\"data_offsets\" must be an array [begin, end]");
  }
  if (!AsNonNegative((*off_it)[0], &e.begin) || !AsNonNegative((*off_it)[1], &e.end)) {
    return TensorError(file, name,
                       absl::StrCat("data_offsets ", ir::ShowJson(*off_it),
                                    " must be two non-negative integers [begin, end]"));
  }
  if (e.begin > e.end) {
    return TensorError(file, name,
                       absl::StrCat("data_offsets ", ir::ShowJson(*off_it), " have begin > end"));
  }
  if (e.end > data_size) {
    return TensorError(file, name,
                       absl::StrCat("data_offsets ", ir::ShowJson(*off_it),
                                    " run past the data section of ", data_size, " bytes"));
  }
  const unsigned __int128 expected = count * static_cast<unsigned>(dt->bytes);
  if (expected != e.end - e.begin) {
    return TensorError(
        file, name,
        absl::StrCat(dtype_name, " ", ir::ShowJson(*shape_it), " needs ",
                     static_cast<uint64_t>(expected), " bytes but data_offsets ",
                     ir::ShowJson(*off_it), " span ", e.end - e.begin));
  }
  return e;
}

// Deepest bracket nesting outside JSON strings. A valid header nests 3 deep (header object,
// tensor object, shape array); checking before parsing keeps adversarial nesting away from
// nlohmann's recursive dump and comparison code.
int NestingDepth(absl::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return deepest;
}

constexpr int kMaxHeaderNesting = 8;

}  // namespace

absl::StatusOr<std::string> SafetensorsDTypeName(ir::DType dtype) {
  for (const DTypeName& d : kDTypes) {
    if (d.dtype == dtype) return std::string(d.name);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "dtype ", ir::DTypeName(dtype), " cannot be stored in safetensors by kvcc"));
}

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeaderFull(absl::string_view header,
                                                             uint64_t data_size,
                                                             absl::string_view file) {
  // nlohmann keeps the last of duplicate keys silently; a callback sees every top-level key
  // so a duplicated tensor name is caught instead of shadowing the first.
  std::set<std::string> seen;
  std::string duplicate;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      std::string key = parsed.get<std::string>();
      if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  if (NestingDepth(header) > kMaxHeaderNesting) {
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": safetensors header nests JSON deeper than ", kMaxHeaderNesting,
        " levels; a valid header needs 3"));
  }
  json root;
  try {
    root = json::parse(header.begin(), header.end(), callback, /*allow_exceptions=*/false);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": safetensors header is not valid JSON: ", e.what()));
  }
  if (root.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": safetensors header is not valid JSON"));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": safetensors header must be a JSON object, got ", root.type_name()));
  }
  if (!duplicate.empty()) {
    return TensorError(file, duplicate, "name appears more than once in the header");
  }

  SafetensorsHeader out;
  try {
    for (auto it = root.begin(); it != root.end(); ++it) {
      if (it.key() == "__metadata__") {
        if (!it.value().is_object()) {
          return absl::InvalidArgumentError(
              absl::StrCat(file, ": \"__metadata__\" must be an object of strings"));
        }
        for (auto m = it.value().begin(); m != it.value().end(); ++m) {
          if (!m.value().is_string()) {
            return absl::InvalidArgumentError(absl::StrCat(
                file, ": \"__metadata__\" value for ", Quoted(m.key()), " is not a string"));
          }
          out.metadata[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      KVCC_ASSIGN_OR_RETURN(auto entry, ParseEntry(it.key(), it.value(), data_size, file));
      out.entries.push_back(std::move(entry));
    }
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": malformed safetensors header: ", e.what()));
  }

  std::sort(out.entries.begin(), out.entries.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  // As the reference implementation (safetensors' Metadata::validate): in offset order each
  // tensor starts where the previous one ended, from 0 to the end of the data section. A data
  // section longer than its tensors means a wrong header length, which would shift every tensor.
  uint64_t covered = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const SafetensorsEntry& e : out.entries) {
    if (e.begin < covered) {
      return TensorError(file, e.name,
                         absl::StrCat("bytes [", e.begin, ", ", e.end, ") overlap tensor ",
                                      Quoted(previous->name), " at [", previous->begin, ", ",
                                      previous->end, ")"));
    }
    if (e.begin > covered) {
      return TensorError(file, e.name,
                         absl::StrCat("starts at byte ", e.begin, " of the data section but the "
                                      "tensors before it end at ", covered,
                                      "; tensors must cover the data section without gaps"));
    }
    covered = e.end;
    previous = &e;
  }
  if (covered != data_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": the tensors cover ", covered, " bytes but the data section after the header "
        "holds ", data_size, "; the header length or the file size is wrong (corrupt or "
        "truncated file)"));
  }
  return out;
}

absl::StatusOr<std::vector<SafetensorsEntry>> ParseSafetensorsHeader(absl::string_view header,
                                                                     uint64_t data_size,
                                                                     absl::string_view file) {
  KVCC_ASSIGN_OR_RETURN(auto parsed, ParseSafetensorsHeaderFull(header, data_size, file));
  return std::move(parsed.entries);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  KVCC_ASSIGN_OR_RETURN(auto mapped, ir::MappedFile::Open(path, "safetensors file"));
  std::shared_ptr<ir::MappedFile> file = std::move(mapped);
  const uint64_t size = file->size();
  if (size < 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": truncated safetensors file: ", size, " bytes, shorter than the 8-byte header "
        "length prefix"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | file->data()[i];
  if (header_len > kMaxSafetensorsHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": safetensors header length ", header_len, " is absurd (limit ",
        kMaxSafetensorsHeaderBytes, " bytes); the file is corrupt or not safetensors"));
  }
  if (header_len > size - 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": safetensors header length ", header_len, " runs past the end of the file (",
        size, " bytes): truncated or corrupt"));
  }
  absl::string_view header(reinterpret_cast<const char*>(file->data()) + 8,
                           static_cast<size_t>(header_len));
  KVCC_ASSIGN_OR_RETURN(auto parsed,
                        ParseSafetensorsHeaderFull(header, size - 8 - header_len, path));

  auto out = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  out->path_ = path;
  out->file_ = std::move(file);
  out->data_offset_ = 8 + header_len;
  out->entries_ = std::move(parsed.entries);
  out->metadata_ = std::move(parsed.metadata);
  for (size_t i = 0; i < out->entries_.size(); ++i) out->index_[out->entries_[i].name] = i;
  return out;
}

absl::StatusOr<SafetensorsTensor> SafetensorsFile::Get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor ", Quoted(name)));
  }
  const SafetensorsEntry& e = entries_[it->second];
  SafetensorsTensor t;
  t.name = e.name;
  t.dtype = e.dtype;
  t.shape = e.shape;
  t.file = path_;
  t.data.owner = file_;
  t.data.bytes = file_->data() + data_offset_ + e.begin;
  t.data.size = static_cast<size_t>(e.end - e.begin);
  return t;
}

namespace {

bool IsPickleName(const std::string& filename) {
  auto ends_with = [&](absl::string_view suffix) {
    return filename.size() >= suffix.size() &&
           filename.compare(filename.size() - suffix.size(), suffix.size(), suffix.data(),
                            suffix.size()) == 0;
  };
  return ends_with(".bin") || ends_with(".pt") || ends_with(".pth") ||
         filename == "pytorch_model.bin.index.json";
}

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("checkpoint directory ", dir, " does not exist"));
  }
  auto ckpt = std::unique_ptr<Checkpoint>(new Checkpoint());
  ckpt->dir_ = dir;
  const fs::path root(dir);

  const fs::path index_path = root / "model.safetensors.index.json";
  if (fs::exists(index_path, ec)) {
    const std::string index_file = index_path.string();
    KVCC_ASSIGN_OR_RETURN(const json index,
                          ir::ReadJsonFile(index_file, {}, "safetensors index"));
    if (!index.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(index_file, ": is ", ir::ShowJson(index),
                                                     ", expected a JSON object"));
    }
    auto wm = index.find("weight_map");
    if (wm == index.end() || !wm->is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_file, ": missing object \"weight_map\" (tensor name -> shard file)"));
    }
    // Open each shard once, in first-mention order.
    std::map<std::string, const SafetensorsFile*> shards;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it.value().is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            index_file, ": weight_map entry for tensor ", Quoted(it.key()),
            " is not a file name string"));
      }
      const std::string shard = it.value().get<std::string>();
      const fs::path shard_rel(shard);
      if (shard.empty() || shard_rel.is_absolute() ||
          std::any_of(shard_rel.begin(), shard_rel.end(),
                      [](const fs::path& p) { return p == ".."; })) {
        return absl::InvalidArgumentError(absl::StrCat(
            index_file, ": weight_map entry for tensor ", Quoted(it.key()), " names shard ",
            Quoted(shard), ", which is not a file inside the checkpoint directory"));
      }
      if (shards.count(shard) == 0) {
        const std::string shard_path = (root / shard_rel).string();
        if (!fs::exists(shard_path, ec)) {
          return absl::NotFoundError(absl::StrCat(
              index_file, " lists shard ", Quoted(shard), " (for tensor ", Quoted(it.key()),
              ") but ", shard_path, " is absent"));
        }
        KVCC_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(shard_path));
        shards[shard] = file.get();
        ckpt->files_.push_back(std::move(file));
      }
      const SafetensorsFile* f = shards[shard];
      if (!f->Has(it.key())) {
        return absl::NotFoundError(absl::StrCat(
            index_file, " maps tensor ", Quoted(it.key()), " to shard ", f->path(),
            ", which does not contain it"));
      }
      ckpt->by_name_[it.key()] = f;
    }
    if (ckpt->files_.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(index_file, ": weight_map is empty"));
    }
    return ckpt;
  }

  std::vector<std::string> safetensors, pickles;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (!entry.is_regular_file(ec)) continue;
    const std::string name = entry.path().filename().string();
    if (name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0) {
      safetensors.push_back(name);
    } else if (IsPickleName(name)) {
      pickles.push_back(name);
    }
  }
  if (ec) {
    return absl::InternalError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  }
  std::sort(safetensors.begin(), safetensors.end());
  std::sort(pickles.begin(), pickles.end());
  // A lone model.safetensors wins over stray extra files (adapters, consolidated copies).
  if (std::find(safetensors.begin(), safetensors.end(), "model.safetensors") !=
      safetensors.end()) {
    safetensors = {"model.safetensors"};
  }
  if (safetensors.empty()) {
    if (!pickles.empty()) {
      return absl::UnimplementedError(absl::StrCat(
          dir, " holds only PyTorch pickle weights (", absl::StrJoin(pickles, ", "),
          "); pytorch .bin pickles are not loaded, convert the checkpoint to safetensors "
          "(e.g. save_pretrained(..., safe_serialization=True))"));
    }
    return absl::NotFoundError(absl::StrCat(
        dir, " has no model.safetensors, model.safetensors.index.json or *.safetensors"));
  }
  for (const std::string& name : safetensors) {
    KVCC_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open((root / name).string()));
    for (const SafetensorsEntry& e : file->entries()) {
      auto prev = ckpt->by_name_.find(e.name);
      if (prev != ckpt->by_name_.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor ", Quoted(e.name), " appears in both ", prev->second->path(),
                         " and ", file->path(), "; without an index the checkpoint is ambiguous"));
      }
      ckpt->by_name_[e.name] = file.get();
    }
    ckpt->files_.push_back(std::move(file));
  }
  return ckpt;
}

bool Checkpoint::Has(const std::string& name) const { return by_name_.count(name) != 0; }

absl::StatusOr<SafetensorsTensor> Checkpoint::Get(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) {
    return absl::NotFoundError(
        absl::StrCat("tensor ", Quoted(name), " not found in checkpoint ", dir_));
  }
  return it->second->Get(name);
}

std::vector<std::string> Checkpoint::Names() const {
  std::vector<std::string> names;
  names.reserve(by_name_.size());
  for (const auto& [name, file] : by_name_) names.push_back(name);
  return names;
}

std::vector<std::string> Checkpoint::Files() const {
  std::vector<std::string> paths;
  for (const auto& f : files_) paths.push_back(f->path());
  return paths;
}

}  // namespace kvcc::frontend
