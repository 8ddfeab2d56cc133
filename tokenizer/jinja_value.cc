#include "tokenizer/jinja_value.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "tokenizer/unicode_category.h"
#include "tokenizer/utf8.h"

namespace kvcc::tokenizer::jinja {
namespace {

absl::Status CheckChild(const Value& v, int* depth) {
  if (v.is_namespace()) return absl::InvalidArgumentError("a namespace cannot be stored in a list or dict");
  *depth = std::max(*depth, v.depth() + 1);
  if (*depth > kMaxValueDepth) {
    return absl::InvalidArgumentError(absl::StrCat("a list or dict nests deeper than ", kMaxValueDepth, " levels"));
  }
  return absl::OkStatus();
}

void AppendHex(uint32_t v, int digits, std::string* out) {
  static const char kHex[] = "0123456789abcdef";
  for (int i = digits - 1; i >= 0; --i) out->push_back(kHex[(v >> (4 * i)) & 0xf]);
}

std::string PyStringRepr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : ToCodePoints(s)) {
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || (c >= 0x7f && c <= 0xa0) || (c != ' ' && IsUnicodeWhitespace(c))) {
      // Not printable for Python's repr (control characters and separators other than ' ').
      if (c <= 0xff) {
        out += "\\x";
        AppendHex(c, 2, &out);
      } else {
        out += "\\u";
        AppendHex(c, 4, &out);
      }
    } else {
      AppendUtf8(c, &out);
    }
  }
  out.push_back(quote);
  return out;
}

void AppendJsonString(const std::string& s, bool ensure_ascii, std::string* out) {
  out->push_back('"');
  for (char32_t c : ToCodePoints(s)) {
    switch (c) {
      case '"': *out += "\\\""; continue;
      case '\\': *out += "\\\\"; continue;
      case '\n': *out += "\\n"; continue;
      case '\r': *out += "\\r"; continue;
      case '\t': *out += "\\t"; continue;
      case '\b': *out += "\\b"; continue;
      case '\f': *out += "\\f"; continue;
      default: break;
    }
    if (c < 0x20 || (ensure_ascii && c >= 0x7f)) {
      if (c > 0xffff) {  // a surrogate pair, as Python writes it
        const uint32_t v = c - 0x10000;
        *out += "\\u";
        AppendHex(0xd800 + (v >> 10), 4, out);
        *out += "\\u";
        AppendHex(0xdc00 + (v & 0x3ff), 4, out);
      } else {
        *out += "\\u";
        AppendHex(c, 4, out);
      }
    } else {
      AppendUtf8(c, out);
    }
  }
  out->push_back('"');
}

absl::Status DumpJson(const Value& v, const JsonDumpOptions& o, int level, size_t max, std::string* out) {
  if (out->size() > max) return absl::InvalidArgumentError(absl::StrCat("tojson output exceeds ", max, " bytes"));
  const bool pretty = o.indent >= 0 || o.indent_string.has_value();
  const std::string item_sep = o.separators ? o.separators->first : (pretty ? "," : ", ");
  const std::string key_sep = o.separators ? o.separators->second : ": ";
  auto newline = [&](int lvl) {
    out->push_back('\n');
    for (int i = 0; i < lvl; ++i) *out += o.indent_string ? *o.indent_string : std::string(o.indent, ' ');
  };
  switch (v.kind()) {
    case Value::Kind::kNone: *out += "null"; return absl::OkStatus();
    case Value::Kind::kBool: *out += v.boolean() ? "true" : "false"; return absl::OkStatus();
    case Value::Kind::kInt: *out += std::to_string(v.integer()); return absl::OkStatus();
    case Value::Kind::kFloat:
      if (std::isnan(v.number())) *out += "NaN";
      else if (std::isinf(v.number())) *out += v.number() > 0 ? "Infinity" : "-Infinity";
      else *out += PyFloatRepr(v.number());
      return absl::OkStatus();
    case Value::Kind::kString: AppendJsonString(v.str(), o.ensure_ascii, out); return absl::OkStatus();
    case Value::Kind::kList: {
      if (v.list().empty()) {
        *out += "[]";
        return absl::OkStatus();
      }
      out->push_back('[');
      for (size_t i = 0; i < v.list().size(); ++i) {
        if (i > 0) *out += item_sep;
        if (pretty) newline(level + 1);
        if (auto s = DumpJson(v.list()[i], o, level + 1, max, out); !s.ok()) return s;
      }
      if (pretty) newline(level);
      out->push_back(']');
      return absl::OkStatus();
    }
    case Value::Kind::kDict: {
      if (v.dict().empty()) {
        *out += "{}";
        return absl::OkStatus();
      }
      std::vector<const std::pair<std::string, Value>*> entries;
      for (const auto& e : v.dict()) entries.push_back(&e);
      if (o.sort_keys) {
        std::stable_sort(entries.begin(), entries.end(), [](auto* a, auto* b) { return a->first < b->first; });
      }
      out->push_back('{');
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i > 0) *out += item_sep;
        if (pretty) newline(level + 1);
        AppendJsonString(entries[i]->first, o.ensure_ascii, out);
        *out += key_sep;
        if (auto s = DumpJson(entries[i]->second, o, level + 1, max, out); !s.ok()) return s;
      }
      if (pretty) newline(level);
      out->push_back('}');
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("Object of type ", TypeName(v), " is not JSON serializable"));
  }
}

}  // namespace

Value Value::Undefined(std::string name) {
  Value v;
  v.name_ = std::move(name);
  return v;
}
Value Value::None() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}
Value Value::Bool(bool b) {
  Value v;
  v.kind_ = Kind::kBool;
  v.b_ = b;
  return v;
}
Value Value::Int(int64_t i) {
  Value v;
  v.kind_ = Kind::kInt;
  v.i_ = i;
  return v;
}
Value Value::Float(double d) {
  Value v;
  v.kind_ = Kind::kFloat;
  v.f_ = d;
  return v;
}
Value Value::String(std::string s) {
  Value v;
  v.kind_ = Kind::kString;
  v.s_ = std::make_shared<const std::string>(std::move(s));
  return v;
}
absl::StatusOr<Value> Value::List(ValueList items, bool tuple) {
  Value v;
  v.kind_ = Kind::kList;
  v.tuple_ = tuple;
  v.depth_ = 1;
  for (const Value& e : items) {
    if (auto s = CheckChild(e, &v.depth_); !s.ok()) return s;
  }
  v.list_ = std::make_shared<const ValueList>(std::move(items));
  return v;
}
absl::StatusOr<Value> Value::Dict(ValueDict items) {
  Value v;
  v.kind_ = Kind::kDict;
  v.depth_ = 1;
  for (const auto& e : items) {
    if (auto s = CheckChild(e.second, &v.depth_); !s.ok()) return s;
  }
  v.dict_ = std::make_shared<ValueDict>(std::move(items));
  return v;
}
Value Value::Namespace(ValueDict items) {
  Value v;
  v.kind_ = Kind::kNamespace;
  v.depth_ = 1;
  v.dict_ = std::make_shared<ValueDict>(std::move(items));
  return v;
}
Value Value::Callable(std::string name, NativeFunction fn) {
  Value v;
  v.kind_ = Kind::kCallable;
  v.name_ = std::move(name);
  v.fn_ = std::make_shared<const NativeFunction>(std::move(fn));
  return v;
}

const Value* Value::Find(absl::string_view key) const {
  if (kind_ != Kind::kDict && kind_ != Kind::kNamespace) return nullptr;
  for (const auto& e : *dict_) {
    if (e.first == key) return &e.second;
  }
  return nullptr;
}

absl::Status Value::SetNamespaceAttr(const std::string& key, Value v) const {
  if (v.is_namespace()) return absl::InvalidArgumentError("a namespace cannot be stored in a namespace");
  for (auto& e : *dict_) {
    if (e.first == key) {
      e.second = std::move(v);
      return absl::OkStatus();
    }
  }
  dict_->emplace_back(key, std::move(v));
  return absl::OkStatus();
}

std::string TypeName(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return "undefined";
    case Value::Kind::kNone: return "NoneType";
    case Value::Kind::kBool: return "bool";
    case Value::Kind::kInt: return "int";
    case Value::Kind::kFloat: return "float";
    case Value::Kind::kString: return "str";
    case Value::Kind::kList: return v.is_tuple() ? "tuple" : "list";
    case Value::Kind::kDict: return "dict";
    case Value::Kind::kNamespace: return "Namespace";
    case Value::Kind::kCallable: return "function";
  }
  return "?";
}

bool Truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return false;
    case Value::Kind::kBool: return v.boolean();
    case Value::Kind::kInt: return v.integer() != 0;
    case Value::Kind::kFloat: return v.number() != 0;
    case Value::Kind::kString: return !v.str().empty();
    case Value::Kind::kList: return !v.list().empty();
    case Value::Kind::kDict: return !v.dict().empty();
    default: return true;
  }
}

bool Equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.number() == b.number();
    return a.integer() == b.integer();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return true;
    case Value::Kind::kString: return a.str() == b.str();
    case Value::Kind::kList:
      if (a.is_tuple() != b.is_tuple() || a.list().size() != b.list().size()) return false;
      for (size_t i = 0; i < a.list().size(); ++i) {
        if (!Equal(a.list()[i], b.list()[i])) return false;
      }
      return true;
    case Value::Kind::kDict: {
      if (a.dict().size() != b.dict().size()) return false;
      for (const auto& e : a.dict()) {
        const Value* other = b.Find(e.first);
        if (other == nullptr || !Equal(e.second, *other)) return false;
      }
      return true;
    }
    case Value::Kind::kNamespace: return &a.dict() == &b.dict();
    case Value::Kind::kCallable: return &a.function() == &b.function();
    default: return false;
  }
}

absl::StatusOr<int> Compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      const double x = a.number(), y = b.number();
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    const int64_t x = a.integer(), y = b.integer();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.str().compare(b.str());  // UTF-8 byte order is code point order
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    const size_t n = std::min(a.list().size(), b.list().size());
    for (size_t i = 0; i < n; ++i) {
      if (Equal(a.list()[i], b.list()[i])) continue;
      return Compare(a.list()[i], b.list()[i]);
    }
    return a.list().size() < b.list().size() ? -1 : (a.list().size() > b.list().size() ? 1 : 0);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("'<' not supported between instances of '", TypeName(a), "' and '", TypeName(b), "'"));
}

std::string PyFloatRepr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[40];
  // The shortest digits that read back as d, as Python's repr picks them.
  int prec = 1;
  for (; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof(buf), "%.*e", prec - 1, d);
    if (std::strtod(buf, nullptr) == d) break;
  }
  std::string s = buf;
  const size_t e = s.find('e');
  const int exp = std::atoi(s.c_str() + e + 1);
  std::string mant = s.substr(0, e);
  const bool neg = mant[0] == '-';
  if (neg) mant.erase(0, 1);
  std::string digits;
  for (char c : mant) {
    if (c != '.') digits.push_back(c);
  }
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string out = neg ? "-" : "";
  if (exp >= -5 + 1 && exp < 16) {  // Python repr: fixed notation for 1e-4 <= |d| < 1e16
    if (exp < 0) {
      out += "0." + std::string(-exp - 1, '0') + digits;
    } else if (static_cast<int>(digits.size()) <= exp + 1) {
      out += digits + std::string(exp + 1 - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, exp + 1) + "." + digits.substr(exp + 1);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char eb[16];
  std::snprintf(eb, sizeof(eb), "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
  return out + eb;
}

namespace {

void Repr(const Value& v, size_t max, std::string* out) {
  if (out->size() > max) return;
  switch (v.kind()) {
    case Value::Kind::kUndefined: return;
    case Value::Kind::kNone: *out += "None"; return;
    case Value::Kind::kBool: *out += v.boolean() ? "True" : "False"; return;
    case Value::Kind::kInt: *out += std::to_string(v.integer()); return;
    case Value::Kind::kFloat: *out += PyFloatRepr(v.number()); return;
    case Value::Kind::kString: *out += PyStringRepr(v.str()); return;
    case Value::Kind::kList: {
      *out += v.is_tuple() ? "(" : "[";
      for (size_t i = 0; i < v.list().size() && out->size() <= max; ++i) {
        if (i > 0) *out += ", ";
        Repr(v.list()[i], max, out);
      }
      if (v.is_tuple() && v.list().size() == 1) *out += ",";
      *out += v.is_tuple() ? ")" : "]";
      return;
    }
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: {
      *out += v.is_namespace() ? "<Namespace {" : "{";
      bool first = true;
      for (const auto& e : v.dict()) {
        if (out->size() > max) return;
        if (!first) *out += ", ";
        first = false;
        *out += PyStringRepr(e.first) + ": ";
        Repr(e.second, max, out);
      }
      *out += v.is_namespace() ? "}>" : "}";
      return;
    }
    case Value::Kind::kCallable: *out += absl::StrCat("<function ", v.callable_name(), ">"); return;
  }
}

}  // namespace

std::string PyStr(const Value& v, size_t max_bytes) {
  if (v.is_string()) return v.str();
  return PyRepr(v, max_bytes);
}

std::string PyRepr(const Value& v, size_t max_bytes) {
  std::string out;
  Repr(v, max_bytes, &out);
  return out;
}

bool IsPySpace(char32_t c) { return IsUnicodeWhitespace(c) || (c >= 0x1C && c <= 0x1F); }

std::string PyStrip(absl::string_view s, bool left, bool right, const std::optional<std::string>& chars) {
  const std::u32string cps = ToCodePoints(s);
  const std::u32string set = chars ? ToCodePoints(*chars) : std::u32string();
  auto strip = [&](char32_t c) { return chars ? set.find(c) != std::u32string::npos : IsPySpace(c); };
  size_t b = 0, e = cps.size();
  if (left) {
    while (b < e && strip(cps[b])) ++b;
  }
  if (right) {
    while (e > b && strip(cps[e - 1])) --e;
  }
  std::string out;
  for (size_t i = b; i < e; ++i) AppendUtf8(cps[i], &out);
  return out;
}

Value FromJson(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return Value::None();
    case nlohmann::ordered_json::value_t::boolean: return Value::Bool(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value::Int(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const uint64_t u = j.get<uint64_t>();
      return u > static_cast<uint64_t>(INT64_MAX) ? Value::Float(static_cast<double>(u))
                                                  : Value::Int(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return Value::Float(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value::String(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      ValueList items;
      for (const auto& e : j) items.push_back(FromJson(e));
      auto v = Value::List(std::move(items));
      return v.ok() ? *v : Value::None();  // JSON readers bound nesting far below the limit
    }
    case nlohmann::ordered_json::value_t::object: {
      ValueDict items;
      for (auto it = j.begin(); it != j.end(); ++it) items.emplace_back(it.key(), FromJson(it.value()));
      auto v = Value::Dict(std::move(items));
      return v.ok() ? *v : Value::None();
    }
    default: return Value::None();
  }
}

absl::StatusOr<std::string> JsonDumps(const Value& v, const JsonDumpOptions& options, size_t max_bytes) {
  std::string out;
  if (auto s = DumpJson(v, options, 0, max_bytes, &out); !s.ok()) return s;
  if (out.size() > max_bytes) return absl::InvalidArgumentError(absl::StrCat("tojson output exceeds ", max_bytes, " bytes"));
  return out;
}

}  // namespace kvcc::tokenizer::jinja
