// Reads safetensors checkpoints: mmap'd, header parsed and bounds-checked, sharded models
// resolved through model.safetensors.index.json. Tensors are views into the mapping.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ir/dtype.h"
#include "ir/mapped_file.h"
#include "ir/weight_data.h"

namespace kvcc::frontend {

struct SafetensorsTensor {
  std::string name;
  ir::DType dtype;
  std::vector<int64_t> shape;
  ir::WeightData data;  // keeps its file mapped
  std::string file;     // the shard it came from, for error messages
};

// Headers larger than this are refused before parsing (the reference implementation's limit);
// real checkpoints need well under 1 MB.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// The safetensors dtype string for one of ours ("F16", ...), or an error for dtypes the format
// (as kvcc reads it) does not carry.
absl::StatusOr<std::string> SafetensorsDTypeName(ir::DType dtype);

// Parses the header bytes of a safetensors file (everything after the 8-byte length prefix)
// against a data section of `data_size` bytes. Exposed separately for the fuzzer.
// Entries come back in data-section order.
struct SafetensorsEntry {
  std::string name;
  ir::DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // offsets inside the data section
};
struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;
  std::map<std::string, std::string> metadata;  // "__metadata__"
};
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeaderFull(absl::string_view header,
                                                             uint64_t data_size,
                                                             absl::string_view file);
absl::StatusOr<std::vector<SafetensorsEntry>> ParseSafetensorsHeader(absl::string_view header,
                                                                     uint64_t data_size,
                                                                     absl::string_view file);

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }
  bool Has(const std::string& name) const { return index_.count(name) != 0; }
  absl::StatusOr<SafetensorsTensor> Get(const std::string& name) const;

 private:
  std::string path_;
  std::shared_ptr<ir::MappedFile> file_;
  uint64_t data_offset_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;  // name -> position in entries_
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint directory: model.safetensors, or the shards named by
// model.safetensors.index.json, or else every *.safetensors file in it. A directory holding
// only pytorch pickles (pytorch_model.bin, *.bin, *.pt) is refused with a message saying
// pickles are not loaded.
class Checkpoint {
 public:
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);
  bool Has(const std::string& name) const;
  absl::StatusOr<SafetensorsTensor> Get(const std::string& name) const;
  std::vector<std::string> Names() const;  // sorted
  const std::string& dir() const { return dir_; }
  // The files actually opened, in the order they were opened.
  std::vector<std::string> Files() const;

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> by_name_;
};

}  // namespace kvcc::frontend
