#include "ir/json_reader.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "ir/file_read.h"
#include "ir/status_macros.h"

namespace kvcc::ir {
namespace {

// Thrown from the parser callback to stop at the first value nested too deep; nlohmann's
// parser is iterative, so this is the only depth that matters.
struct TooDeep {};

}  // namespace

absl::StatusOr<Json> ParseJson(absl::string_view text, absl::string_view source,
                               const JsonLimits& limits) {
  if (static_cast<int64_t>(text.size()) > limits.max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", text.size(),
                                                   " bytes of JSON, more than the limit of ",
                                                   limits.max_bytes));
  }
  const int max_depth = limits.max_depth;
  Json::parser_callback_t depth_check = [max_depth](int depth, Json::parse_event_t event,
                                                    Json&) {
    if ((event == Json::parse_event_t::object_start ||
         event == Json::parse_event_t::array_start) &&
        depth >= max_depth) {
      throw TooDeep{};
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), depth_check, /*allow_exceptions=*/true);
  } catch (const TooDeep&) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": JSON nested deeper than ", max_depth, " levels; not a kvcc input"));
  } catch (const Json::parse_error& e) {
    // e.what() reads "[json.exception.parse_error.101] parse error at line 3, column 7: ...".
    std::string what = e.what();
    const size_t at = what.find("parse error");
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": invalid JSON: ", at == std::string::npos ? what : what.substr(at)));
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": invalid JSON: ", e.what()));
  }
}

absl::StatusOr<Json> ReadJsonFile(const std::string& path, const JsonLimits& limits,
                                  absl::string_view what) {
  KVCC_ASSIGN_OR_RETURN(auto text, ReadRegularFile(path, limits.max_bytes, what));
  return ParseJson(text, path, limits);
}

std::string ShowJson(const Json& v) {
  if (v.is_structured()) {
    // Only a flat value is dumped, so the rendering never recurses into nesting.
    bool flat = v.size() <= 16;
    for (const Json& child : v) flat = flat && !child.is_structured();
    if (!flat) {
      return v.is_object() ? absl::StrCat("an object of ", v.size(), " keys")
                           : absl::StrCat("an array of ", v.size(), " values");
    }
  }
  std::string s = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

bool JsonReader::Has(const char* key) const {
  return j_.is_object() && j_.contains(key) && !j_.at(key).is_null();
}

absl::Status JsonReader::Bad(const char* key, const Json& value,
                             absl::string_view expected) const {
  return absl::InvalidArgumentError(absl::StrCat(file_, ": key '", Key(key), "' is ",
                                                 ShowJson(value), ", expected ", expected));
}

absl::Status JsonReader::Missing(const char* key, absl::string_view expected) const {
  return absl::InvalidArgumentError(absl::StrCat(file_, ": key '", Key(key), "' is ",
                                                 j_.is_object() && j_.contains(key) ? "null"
                                                                                    : "missing",
                                                 " (expected ", expected, ")"));
}

absl::StatusOr<int64_t> JsonReader::Int(const char* key, int64_t lo, int64_t hi,
                                        std::optional<int64_t> fallback) const {
  const std::string expected = absl::StrCat("an integer in [", lo, ", ", hi, "]");
  if (!Has(key)) {
    if (fallback) return *fallback;
    return Missing(key, expected);
  }
  const Json& v = At(key);
  int64_t x = 0;
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Bad(key, v, expected);
    }
    x = static_cast<int64_t>(u);
  } else if (v.is_number_integer()) {
    x = v.get<int64_t>();
  } else {
    return Bad(key, v, expected);
  }
  if (x < lo || x > hi) return Bad(key, v, expected);
  return x;
}

absl::StatusOr<double> JsonReader::Float(const char* key, double lo, bool strict_lo, double hi,
                                         std::optional<double> fallback) const {
  const std::string expected =
      absl::StrCat("a number ", strict_lo ? "> " : ">= ", lo, " and <= ", hi);
  if (!Has(key)) {
    if (fallback) return *fallback;
    return Missing(key, expected);
  }
  const Json& v = At(key);
  if (!v.is_number()) return Bad(key, v, expected);
  const double x = v.get<double>();
  if (!std::isfinite(x) || x > hi || (strict_lo ? x <= lo : x < lo)) {
    return Bad(key, v, expected);
  }
  return x;
}

absl::StatusOr<bool> JsonReader::Bool(const char* key, std::optional<bool> fallback) const {
  if (!Has(key)) {
    if (fallback) return *fallback;
    return Missing(key, "true or false");
  }
  const Json& v = At(key);
  if (!v.is_boolean()) return Bad(key, v, "true or false");
  return v.get<bool>();
}

absl::StatusOr<std::string> JsonReader::String(const char* key,
                                               std::optional<std::string> fallback) const {
  if (!Has(key)) {
    if (fallback) return *fallback;
    return Missing(key, "a string");
  }
  const Json& v = At(key);
  if (!v.is_string()) return Bad(key, v, "a string");
  return v.get<std::string>();
}

absl::StatusOr<JsonReader> JsonReader::Object(const char* key) const {
  if (!Has(key)) return Missing(key, "an object");
  const Json& v = At(key);
  if (!v.is_object()) return Bad(key, v, "an object");
  return JsonReader(v, file_, absl::StrCat(Key(key), "."));
}

}  // namespace kvcc::ir
