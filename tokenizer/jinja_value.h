// The values a Jinja chat template computes with (Python's None, bool, int, float, str, list,
// tuple, dict, plus Jinja's undefined, namespace() and callables), with Python's semantics for
// truthiness, equality, ordering, str(), repr() and json.dumps() as transformers calls it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace kvcc::tokenizer::jinja {

class Value;
using ValueList = std::vector<Value>;
// Insertion-ordered, as Python dicts are; keys are strings (all chat data is JSON).
using ValueDict = std::vector<std::pair<std::string, Value>>;

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};
using NativeFunction = std::function<absl::StatusOr<Value>(const CallArgs&)>;

// Lists and dicts nest at most this deep, so printing, comparing and destroying a value never
// recurses without bound however a template builds it.
inline constexpr int kMaxValueDepth = 200;

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace, kCallable };

  Value() = default;  // undefined
  static Value Undefined(std::string name = "");
  static Value None();
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double d);
  static Value String(std::string s);
  // An error if an element nests deeper than kMaxValueDepth.
  static absl::StatusOr<Value> List(ValueList items, bool tuple = false);
  static absl::StatusOr<Value> Dict(ValueDict items);
  static Value Namespace(ValueDict items);
  static Value Callable(std::string name, NativeFunction fn);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_tuple() const { return kind_ == Kind::kList && tuple_; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const { return kind_ == Kind::kNamespace; }
  bool is_callable() const { return kind_ == Kind::kCallable; }

  bool boolean() const { return b_; }
  int64_t integer() const { return is_bool() ? (b_ ? 1 : 0) : i_; }
  double number() const { return is_float() ? f_ : static_cast<double>(integer()); }
  const std::string& str() const { return *s_; }
  const ValueList& list() const { return *list_; }
  const ValueDict& dict() const { return *dict_; }  // dict or namespace entries
  const std::string& undefined_name() const { return name_; }
  const std::string& callable_name() const { return name_; }
  const NativeFunction& function() const { return *fn_; }
  int depth() const { return depth_; }

  // The entry for `key` of a dict or namespace, or null.
  const Value* Find(absl::string_view key) const;
  // Assigns a namespace attribute (namespaces are the one mutable value, shared by copies).
  // A namespace may not hold a namespace, nor sit in a list or dict, so values stay trees.
  absl::Status SetNamespaceAttr(const std::string& key, Value v) const;

 private:
  Kind kind_ = Kind::kUndefined;
  bool b_ = false;
  bool tuple_ = false;
  int depth_ = 0;
  int64_t i_ = 0;
  double f_ = 0;
  std::string name_;
  std::shared_ptr<const std::string> s_;
  std::shared_ptr<const ValueList> list_;
  std::shared_ptr<ValueDict> dict_;
  std::shared_ptr<const NativeFunction> fn_;
};

// Python's type name, for messages ("str", "int", "list", "dict", "NoneType", "undefined").
std::string TypeName(const Value& v);
bool Truthy(const Value& v);
// Python ==, with 1 == 1.0 == True.
bool Equal(const Value& a, const Value& b);
// Python's <, as -1 / 0 / 1; an error for types Python cannot order.
absl::StatusOr<int> Compare(const Value& a, const Value& b);
// Python str() (what {{ }} prints; undefined prints nothing) and repr(). Past `max_bytes`
// they stop early, returning a longer-than-max prefix, so printing a huge list stays cheap.
std::string PyStr(const Value& v, size_t max_bytes = SIZE_MAX);
std::string PyRepr(const Value& v, size_t max_bytes = SIZE_MAX);
std::string PyFloatRepr(double d);

// Python str.isspace() for one code point, and str.strip()/lstrip()/rstrip() with optional
// `chars` (nullopt strips whitespace).
bool IsPySpace(char32_t c);
std::string PyStrip(absl::string_view s, bool left, bool right,
                    const std::optional<std::string>& chars = std::nullopt);

// Chat data (messages, tools) as values; objects keep their key order.
Value FromJson(const nlohmann::ordered_json& j);

// Python's json.dumps(v, ensure_ascii, indent, separators, sort_keys) as transformers'
// tojson filter calls it; `indent` < 0 is None. Undefined and callables are an error.
struct JsonDumpOptions {
  bool ensure_ascii = false;
  int indent = -1;
  std::optional<std::string> indent_string;  // indent given as a string
  std::optional<std::pair<std::string, std::string>> separators;
  bool sort_keys = false;
};
// Past `max_bytes` of output it stops with an error.
absl::StatusOr<std::string> JsonDumps(const Value& v, const JsonDumpOptions& options,
                                      size_t max_bytes = SIZE_MAX);

}  // namespace kvcc::tokenizer::jinja
