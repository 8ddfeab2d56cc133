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

// Parses the header bytes of a safetensors file (everything after the 8-byte length prefix)
// against a data section of `data_size` bytes. Exposed separately for the fuzzer.
struct SafetensorsEntry {
  std::string name;
  ir::DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // offsets inside the data section
};
absl::StatusOr<std::vector<SafetensorsEntry>> ParseSafetensorsHeader(absl::string_view header,
                                                                     uint64_t data_size,
                                                                     absl::string_view file);

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  absl::StatusOr<SafetensorsTensor> Get(const std::string& name) const;

 private:
  std::shared_ptr<ir::MappedFile> file_;
  uint64_t data_offset_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint directory: model.safetensors, or the shards named by
// model.safetensors.index.json. A directory holding only pytorch_model.bin is refused with a
// message saying pickles are not loaded.
class Checkpoint {
 public:
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);
  bool Has(const std::string& name) const;
  absl::StatusOr<SafetensorsTensor> Get(const std::string& name) const;
  std::vector<std::string> Names() const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> by_name_;
};

}  // namespace kvcc::frontend
