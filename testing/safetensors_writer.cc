#include "testing/safetensors_writer.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"
#include <nlohmann/json.hpp>

namespace kvcc::testing {

absl::StatusOr<uint64_t> SafetensorsTensorBytes(const SafetensorsTensorSpec& spec) {
  unsigned __int128 count = 1;
  for (int64_t d : spec.shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", spec.name, "': negative dimension ", d));
    }
    count *= static_cast<uint64_t>(d);
    if (count > (static_cast<unsigned __int128>(1) << 62)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", spec.name, "' is too large"));
    }
  }
  return static_cast<uint64_t>(ir::DTypeBytes(spec.dtype, static_cast<int64_t>(count)));
}

absl::StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::Create(
    const std::string& path, const std::vector<SafetensorsTensorSpec>& tensors,
    const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const SafetensorsTensorSpec& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": invalid tensor name '", t.name, "'"));
    }
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", t.name, "' declared twice"));
    }
    auto dtype = frontend::SafetensorsDTypeName(t.dtype);
    if (!dtype.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", t.name, "': ", dtype.status().message()));
    }
    auto bytes = SafetensorsTensorBytes(t);
    if (!bytes.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", bytes.status().message()));
    }
    nlohmann::ordered_json entry;
    entry["dtype"] = *dtype;
    entry["shape"] = t.shape;
    entry["data_offsets"] = {offset, offset + *bytes};
    header[t.name] = std::move(entry);
    offset += *bytes;
  }
  std::string text = header.dump();
  // Pad with spaces (valid JSON whitespace) so the data section starts 8-byte aligned, as the
  // reference writer does.
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');

  KVCC_ASSIGN_OR_RETURN(auto file, ir::AtomicFile::Create(path));
  uint8_t prefix[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<uint8_t>(n >> (8 * i));
  KVCC_RETURN_IF_ERROR(file->Write(prefix, 8));
  KVCC_RETURN_IF_ERROR(file->Write(text));
  return std::unique_ptr<SafetensorsWriter>(new SafetensorsWriter(std::move(file), offset));
}

absl::Status SafetensorsWriter::Append(const void* data, size_t size) {
  if (appended_ + size > data_bytes_) {
    return absl::OutOfRangeError(absl::StrCat(
        file_->path(), ": ", appended_ + size, " data bytes appended, but the declared tensors "
        "hold only ", data_bytes_));
  }
  appended_ += size;
  return file_->Write(data, size);
}

absl::Status SafetensorsWriter::Finish() {
  if (appended_ != data_bytes_) {
    return absl::FailedPreconditionError(absl::StrCat(
        file_->path(), ": only ", appended_, " of ", data_bytes_,
        " declared data bytes were written"));
  }
  return file_->Commit();
}

absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<frontend::SafetensorsTensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::vector<SafetensorsTensorSpec> specs;
  for (const frontend::SafetensorsTensor& t : tensors) {
    SafetensorsTensorSpec spec{t.name, t.dtype, t.shape};
    KVCC_ASSIGN_OR_RETURN(auto bytes, SafetensorsTensorBytes(spec));
    if (bytes != t.data.size) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", t.name, "' has ",
                                                     t.data.size,
                                                     " bytes; its dtype and shape need ", bytes));
    }
    specs.push_back(std::move(spec));
  }
  KVCC_ASSIGN_OR_RETURN(auto writer, SafetensorsWriter::Create(path, specs, metadata));
  for (const frontend::SafetensorsTensor& t : tensors) {
    KVCC_RETURN_IF_ERROR(writer->Append(t.data.bytes, t.data.size));
  }
  return writer->Finish();
}

}  // namespace kvcc::testing
