// The one JSON reader of kvcc: bounded parsing (size and nesting depth, so a hostile file can
// neither exhaust memory nor overflow the stack) with errors that name the file, line and
// column, and typed, range-checked access to an object's keys whose errors name the file, the
// key path and the offending value. config.json, tokenizer files, kv_params.json and the
// safetensors headers are all read through it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace kvcc::ir {

using Json = nlohmann::json;

struct JsonLimits {
  int max_depth = 128;                   // nested arrays/objects
  int64_t max_bytes = int64_t{1} << 28;  // 256 MiB
};

// Parses `text`; `source` (a path) prefixes every message. Syntax errors give line and column;
// deeper nesting than `limits.max_depth` is an error, found without recursion.
absl::StatusOr<Json> ParseJson(absl::string_view text, absl::string_view source,
                               const JsonLimits& limits = {});

// ir::ReadRegularFile (no FIFOs or devices, size-capped) then ParseJson.
absl::StatusOr<Json> ReadJsonFile(const std::string& path, const JsonLimits& limits = {},
                                  absl::string_view what = "JSON file");

// A short rendering of a value for messages: scalars and flat arrays/objects as JSON (at most
// 80 characters), nested ones by kind and size, so printing never recurses into a deep value.
std::string ShowJson(const Json& value);

// Typed access to the keys of one JSON object. Absent and null keys are the same ("not given").
class JsonReader {
 public:
  // `object` must outlive the reader. `prefix` is the key path of `object` ("rope_scaling.").
  JsonReader(const Json& object, std::string file, std::string prefix = "")
      : j_(object), file_(std::move(file)), prefix_(std::move(prefix)) {}

  bool Has(const char* key) const;
  const Json& At(const char* key) const { return j_.at(key); }
  std::string Key(const char* key) const { return prefix_ + key; }
  const std::string& file() const { return file_; }
  const Json& json() const { return j_; }

  // "<file>: key '<path>' is <value>, expected <expected>".
  absl::Status Bad(const char* key, const Json& value, absl::string_view expected) const;
  // A required key that is absent or null.
  absl::Status Missing(const char* key, absl::string_view expected) const;

  // An integer in [lo, hi] (5.0 and 5.5 are not integers); `fallback` when absent, else required.
  absl::StatusOr<int64_t> Int(const char* key, int64_t lo, int64_t hi,
                              std::optional<int64_t> fallback = std::nullopt) const;
  // A finite number with lo < x (lo <= x unless strict_lo) and x <= hi.
  absl::StatusOr<double> Float(const char* key, double lo, bool strict_lo, double hi,
                               std::optional<double> fallback = std::nullopt) const;
  absl::StatusOr<bool> Bool(const char* key, std::optional<bool> fallback = std::nullopt) const;
  absl::StatusOr<std::string> String(const char* key,
                                     std::optional<std::string> fallback = std::nullopt) const;
  // The object under `key` as a reader with the key path extended; an error unless an object.
  absl::StatusOr<JsonReader> Object(const char* key) const;

 private:
  const Json& j_;
  std::string file_;
  std::string prefix_;
};

}  // namespace kvcc::ir
