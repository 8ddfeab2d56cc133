#include "tokenizer/jinja_template.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <ctime>
#include <unordered_map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ir/status_macros.h"
#include "tokenizer/jinja_lexer.h"
#include "tokenizer/unicode_category.h"
#include "tokenizer/utf8.h"

namespace kvcc::tokenizer::jinja {
namespace {

constexpr const char* kFilters[] = {
    "abs", "capitalize", "count", "d", "default", "e", "escape", "first", "float", "indent", "int",
    "items", "join", "last", "length", "list", "lower", "map", "reject", "rejectattr", "replace",
    "reverse", "safe", "select", "selectattr", "sort", "string", "title", "tojson", "trim", "unique",
    "upper"};
constexpr const char* kTests[] = {
    "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "even", "false", "float", "ge",
    "gt", "in", "integer", "iterable", "le", "lower", "lt", "mapping", "ne", "none", "number", "odd",
    "sameas", "sequence", "string", "true", "undefined", "upper", "==", "!=", "<", "<=", ">", ">="};
constexpr int64_t kMaxRange = 100000;  // jinja2's sandbox refuses longer range()s

bool Known(absl::string_view name, const char* const* begin, const char* const* end) {
  return std::any_of(begin, end, [&](const char* k) { return name == k; });
}

absl::Status Err(absl::string_view msg) { return absl::InvalidArgumentError(msg); }

// Prefixes the position of `line`/`column` unless the error already names one.
absl::Status Locate(const absl::Status& s, int line, int column) {
  if (absl::StartsWith(s.message(), "line ")) return s;
  return absl::Status(s.code(), absl::StrCat("line ", line, ", column ", column, ": ", s.message()));
}

// Filters and tests are refused at parse time when unknown, as jinja2 does when it compiles.
absl::Status CheckNames(const Expr& e) {
  if (e.kind == Expr::Kind::kFilter && !Known(e.name, std::begin(kFilters), std::end(kFilters))) {
    return Locate(Err(absl::StrCat("unsupported filter '", e.name, "'")), e.line, e.column);
  }
  if (e.kind == Expr::Kind::kTest && !Known(e.name, std::begin(kTests), std::end(kTests))) {
    return Locate(Err(absl::StrCat("unsupported test '", e.name, "'")), e.line, e.column);
  }
  for (const ExprPtr& a : e.args) {
    if (a) KVCC_RETURN_IF_ERROR(CheckNames(*a));
  }
  for (const auto& kw : e.kwargs) KVCC_RETURN_IF_ERROR(CheckNames(*kw.second));
  return absl::OkStatus();
}

absl::Status CheckNames(const NodeList& nodes) {
  for (const auto& n : nodes) {
    for (const Expr* e : {n->expr.get(), n->cond.get()}) {
      if (e) KVCC_RETURN_IF_ERROR(CheckNames(*e));
    }
    for (const auto& b : n->branches) {
      KVCC_RETURN_IF_ERROR(CheckNames(*b.first));
      KVCC_RETURN_IF_ERROR(CheckNames(b.second));
    }
    for (const auto& p : n->params) {
      if (p.second) KVCC_RETURN_IF_ERROR(CheckNames(*p.second));
    }
    KVCC_RETURN_IF_ERROR(CheckNames(n->body));
    KVCC_RETURN_IF_ERROR(CheckNames(n->else_body));
  }
  return absl::OkStatus();
}

// Positional-or-keyword argument `pos` / `name` of a call, or null.
const Value* Arg(const CallArgs& a, size_t pos, absl::string_view name) {
  for (const auto& kw : a.keyword) {
    if (kw.first == name) return &kw.second;
  }
  return pos < a.positional.size() ? &a.positional[pos] : nullptr;
}

absl::StatusOr<std::string> StringArg(const CallArgs& a, size_t pos, absl::string_view name, absl::string_view fn) {
  const Value* v = Arg(a, pos, name);
  if (v == nullptr || !v->is_string()) {
    return Err(absl::StrCat(fn, "() argument '", name, "' must be a string"));
  }
  return v->str();
}

absl::StatusOr<int64_t> IntArg(const CallArgs& a, size_t pos, absl::string_view name, int64_t fallback) {
  const Value* v = Arg(a, pos, name);
  if (v == nullptr || v->is_none()) return fallback;
  if (!v->is_int() && !v->is_bool()) return Err(absl::StrCat("argument '", name, "' must be an integer"));
  return v->integer();
}

bool BoolArg(const CallArgs& a, size_t pos, absl::string_view name, bool fallback) {
  const Value* v = Arg(a, pos, name);
  return v == nullptr ? fallback : Truthy(*v);
}

std::string AsciiMap(const std::string& s, bool upper) {
  std::string out = s;
  for (char& c : out) c = upper ? absl::ascii_toupper(c) : absl::ascii_tolower(c);
  return out;
}

// Python's str.title(), on ASCII letters (other letters count as cased, unchanged).
std::string Title(const std::string& s) {
  std::string out;
  bool prev_cased = false;
  for (char32_t c : ToCodePoints(s)) {
    if (c < 0x80 && absl::ascii_isalpha(static_cast<unsigned char>(c))) {
      out.push_back(prev_cased ? absl::ascii_tolower(static_cast<char>(c)) : absl::ascii_toupper(static_cast<char>(c)));
      prev_cased = true;
    } else {
      AppendUtf8(c, &out);
      prev_cased = c >= 0x80 && IsUnicodeLetter(c);
    }
  }
  return out;
}

std::string Capitalize(const std::string& s) {
  std::string out = AsciiMap(s, false);
  if (!out.empty()) out[0] = absl::ascii_toupper(out[0]);
  return out;
}

std::string ReplaceAll(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  std::string out;
  if (from.empty()) {  // Python inserts `to` around every code point
    const std::u32string cps = ToCodePoints(s);
    int64_t n = 0;
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || n < count) {
        out += to;
        ++n;
      }
      if (i < cps.size()) AppendUtf8(cps[i], &out);
    }
    return out;
  }
  size_t pos = 0;
  int64_t n = 0;
  while (count < 0 || n < count) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += to;
    pos = hit + from.size();
    ++n;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

// An upper bound on the bytes `from`->`to` replacement can produce, so it is checked first.
int64_t ReplaceSize(const std::string& s, const std::string& from, const std::string& to) {
  const int64_t hits = from.empty() ? static_cast<int64_t>(s.size()) + 1
                                    : static_cast<int64_t>(s.size() / from.size());
  return static_cast<int64_t>(s.size()) + hits * static_cast<int64_t>(to.size());
}

absl::StatusOr<ValueList> IterateValue(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return ValueList();
    case Value::Kind::kList: return v.list();
    case Value::Kind::kDict: {
      ValueList keys;
      for (const auto& e : v.dict()) keys.push_back(Value::String(e.first));
      return keys;
    }
    case Value::Kind::kString: {
      ValueList chars;
      for (char32_t c : ToCodePoints(v.str())) chars.push_back(Value::String(EncodeUtf8(c)));
      return chars;
    }
    default: return Err(absl::StrCat("'", TypeName(v), "' object is not iterable"));
  }
}

// The entries of dict(...) / namespace(...): positional dicts, then keywords; a repeated key
// keeps its first place and its last value, as Python's dict does.
absl::StatusOr<ValueDict> MergedArgs(const CallArgs& a, absl::string_view fn) {
  ValueDict out;
  auto put = [&](const std::string& k, const Value& v) {
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& e) { return e.first == k; });
    if (it != out.end()) it->second = v;
    else out.emplace_back(k, v);
  };
  for (const Value& p : a.positional) {
    if (!p.is_dict()) return Err(absl::StrCat(fn, "() takes keyword arguments or a dict"));
    for (const auto& e : p.dict()) put(e.first, e.second);
  }
  for (const auto& kw : a.keyword) put(kw.first, kw.second);
  return out;
}

absl::Status Undefined(const Value& v) {
  return Err(v.undefined_name().empty() ? "a value is undefined" : v.undefined_name());
}

class Renderer {
 public:
  Renderer(const TemplateLimits& l) : limits_(l) {}

  absl::StatusOr<std::string> Run(const NodeList& root, const ValueDict& globals) {
    scopes_.emplace_back();
    InstallBuiltins();
    for (const auto& g : globals) scopes_[0][g.first] = g.second;
    scopes_.emplace_back();
    std::string out;
    KVCC_ASSIGN_OR_RETURN(Flow f, Exec(root, &out));
    if (f != Flow::kNormal) return Err("{% break %} or {% continue %} outside a loop");
    return out;
  }

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  using Scope = std::unordered_map<std::string, Value>;

  absl::Status Step() {
    if (++steps_ > limits_.max_steps) {
      return Err(absl::StrCat("the template ran for more than ", limits_.max_steps, " steps"));
    }
    return absl::OkStatus();
  }

  // Work linear in a value's size (scanning a string, searching a list) counts as steps too, so
  // the step limit bounds time however large the values are.
  absl::Status Work(const Value& v) {
    if (v.is_string()) steps_ += static_cast<int64_t>(v.str().size() / 32);
    if (v.is_list()) steps_ += static_cast<int64_t>(v.list().size() / 4);
    if (v.is_dict()) steps_ += static_cast<int64_t>(v.dict().size() / 4);
    return Step();
  }

  absl::Status Charge(int64_t bytes) {
    alloc_ += bytes;
    if (alloc_ > limits_.max_alloc_bytes) {
      return Err(absl::StrCat("the template built more than ", limits_.max_alloc_bytes, " bytes of values"));
    }
    return absl::OkStatus();
  }
  absl::Status Charge(const Value& v) {
    if (v.is_string()) return Charge(static_cast<int64_t>(v.str().size()));
    if (v.is_list()) {
      if (static_cast<int64_t>(v.list().size()) > limits_.max_items) {
        return Err(absl::StrCat("a list has more than ", limits_.max_items, " items"));
      }
      return Charge(static_cast<int64_t>(v.list().size() * sizeof(Value)));
    }
    if (v.is_dict()) return Charge(static_cast<int64_t>(v.dict().size() * (sizeof(Value) + 32)));
    return absl::OkStatus();
  }
  // The items a for loop or filter walks; a string's characters count against max_items.
  absl::StatusOr<ValueList> Iterate(const Value& v) {
    if (v.is_string() && static_cast<int64_t>(v.str().size()) > limits_.max_items &&
        static_cast<int64_t>(ToCodePoints(v.str()).size()) > limits_.max_items) {
      return Err(absl::StrCat("a string of more than ", limits_.max_items, " characters cannot be iterated"));
    }
    return IterateValue(v);
  }

  absl::Status CheckSize(int64_t bytes) const {
    if (bytes > limits_.max_output_bytes) {
      return Err(absl::StrCat("the template output exceeds ", limits_.max_output_bytes, " bytes"));
    }
    return absl::OkStatus();
  }
  absl::StatusOr<Value> MakeString(std::string s) {
    KVCC_RETURN_IF_ERROR(CheckSize(static_cast<int64_t>(s.size())));
    return Value::String(std::move(s));
  }
  absl::StatusOr<Value> MakeList(ValueList items, bool tuple = false) {
    if (static_cast<int64_t>(items.size()) > limits_.max_items) {
      return Err(absl::StrCat("a list has more than ", limits_.max_items, " items"));
    }
    return Value::List(std::move(items), tuple);
  }
  // str(v) with the output limit checked, also while a large list or dict is printed.
  absl::StatusOr<std::string> Str(const Value& v) {
    std::string s = PyStr(v, static_cast<size_t>(limits_.max_output_bytes));
    KVCC_RETURN_IF_ERROR(CheckSize(static_cast<int64_t>(s.size())));
    return s;
  }

  const Value* Lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return &f->second;
    }
    return nullptr;
  }

  void InstallBuiltins();

  // ---- statements ----
  absl::StatusOr<Flow> Exec(const NodeList& nodes, std::string* out) {
    for (const auto& n : nodes) {
      KVCC_RETURN_IF_ERROR(Locate(Step(), n->line, n->column));
      auto f = ExecNode(*n, out);
      if (!f.ok()) return Locate(f.status(), n->line, n->column);
      if (*f != Flow::kNormal) return *f;
    }
    return Flow::kNormal;
  }

  absl::Status Append(std::string* out, absl::string_view s) {
    KVCC_RETURN_IF_ERROR(CheckSize(static_cast<int64_t>(out->size() + s.size())));
    out->append(s.data(), s.size());
    return absl::OkStatus();
  }

  absl::Status Assign(const std::vector<std::string>& targets, const Value& v) {
    if (targets.size() == 1) {
      scopes_.back()[targets[0]] = v;
      return absl::OkStatus();
    }
    if (!v.is_list() && !v.is_string()) return Err(absl::StrCat("cannot unpack a ", TypeName(v)));
    KVCC_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
    if (items.size() != targets.size()) {
      return Err(absl::StrCat("cannot unpack ", items.size(), " values into ", targets.size(), " names"));
    }
    for (size_t i = 0; i < targets.size(); ++i) scopes_.back()[targets[i]] = items[i];
    return absl::OkStatus();
  }

  absl::StatusOr<Flow> ExecNode(const Node& n, std::string* out) {
    switch (n.kind) {
      case Node::Kind::kText:
        KVCC_RETURN_IF_ERROR(Append(out, n.text));
        return Flow::kNormal;
      case Node::Kind::kOutput: {
        KVCC_ASSIGN_OR_RETURN(Value v, Eval(*n.expr));
        KVCC_ASSIGN_OR_RETURN(std::string s, Str(v));
        KVCC_RETURN_IF_ERROR(Append(out, s));
        return Flow::kNormal;
      }
      case Node::Kind::kIf:
        for (const auto& b : n.branches) {
          KVCC_ASSIGN_OR_RETURN(Value c, Eval(*b.first));
          if (Truthy(c)) return Exec(b.second, out);
        }
        return Exec(n.else_body, out);
      case Node::Kind::kFor: return ExecFor(n, out);
      case Node::Kind::kSet: {
        KVCC_ASSIGN_OR_RETURN(Value v, Eval(*n.expr));
        if (n.attr.empty()) {
          KVCC_RETURN_IF_ERROR(Assign(n.targets, v));
          return Flow::kNormal;
        }
        const Value* ns = Lookup(n.text);
        if (ns == nullptr || !ns->is_namespace()) {
          return Err(absl::StrCat("cannot assign attribute '", n.attr, "' on '", n.text, "', which is not a namespace()"));
        }
        KVCC_RETURN_IF_ERROR(ns->SetNamespaceAttr(n.attr, std::move(v)));
        return Flow::kNormal;
      }
      case Node::Kind::kSetBlock: {
        std::string body;
        KVCC_ASSIGN_OR_RETURN(Flow f, Exec(n.body, &body));
        KVCC_RETURN_IF_ERROR(Charge(static_cast<int64_t>(body.size())));
        scopes_.back()[n.text] = Value::String(std::move(body));
        return f;
      }
      case Node::Kind::kMacro: {
        const Node* macro = &n;
        scopes_.back()[n.text] = Value::Callable(n.text, [this, macro](const CallArgs& a) { return CallMacro(*macro, a); });
        return Flow::kNormal;
      }
      case Node::Kind::kBreak: return Flow::kBreak;
      case Node::Kind::kContinue: return Flow::kContinue;
      case Node::Kind::kBlock: return Exec(n.body, out);
    }
    return Err("unhandled statement");
  }

  absl::StatusOr<Flow> ExecFor(const Node& n, std::string* out) {
    KVCC_ASSIGN_OR_RETURN(Value seq, Eval(*n.expr));
    KVCC_ASSIGN_OR_RETURN(ValueList items, Iterate(seq));
    if (n.cond) {  // the loop filter: loop.length and friends count only what passes
      ValueList kept;
      for (const Value& item : items) {
        KVCC_RETURN_IF_ERROR(Step());
        scopes_.emplace_back();
        absl::Status bound = Assign(n.targets, item);
        absl::StatusOr<Value> c = bound.ok() ? Eval(*n.cond) : absl::StatusOr<Value>(bound);
        scopes_.pop_back();
        if (!c.ok()) return c.status();
        if (Truthy(*c)) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      scopes_.emplace_back();
      auto f = Exec(n.else_body, out);
      scopes_.pop_back();
      return f;
    }
    const int64_t len = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < len; ++i) {
      KVCC_RETURN_IF_ERROR(Step());
      scopes_.emplace_back();
      absl::Status s = Assign(n.targets, items[i]);
      if (s.ok()) {
        ValueDict loop = {{"index", Value::Int(i + 1)},
                          {"index0", Value::Int(i)},
                          {"revindex", Value::Int(len - i)},
                          {"revindex0", Value::Int(len - i - 1)},
                          {"first", Value::Bool(i == 0)},
                          {"last", Value::Bool(i == len - 1)},
                          {"length", Value::Int(len)},
                          {"depth", Value::Int(1)},
                          {"depth0", Value::Int(0)}};
        if (i > 0) loop.emplace_back("previtem", items[i - 1]);
        if (i + 1 < len) loop.emplace_back("nextitem", items[i + 1]);
        loop.emplace_back("cycle", Value::Callable("cycle", [i](const CallArgs& a) -> absl::StatusOr<Value> {
                            if (a.positional.empty()) return Err("loop.cycle() needs at least one argument");
                            return a.positional[static_cast<size_t>(i) % a.positional.size()];
                          }));
        auto loop_value = Value::Dict(std::move(loop));
        if (!loop_value.ok()) s = loop_value.status();
        else scopes_.back()["loop"] = *loop_value;
      }
      absl::StatusOr<Flow> f = s.ok() ? Exec(n.body, out) : absl::StatusOr<Flow>(s);
      scopes_.pop_back();
      if (!f.ok()) return f.status();
      if (*f == Flow::kBreak) break;
    }
    return Flow::kNormal;
  }

  absl::StatusOr<Value> CallMacro(const Node& m, const CallArgs& a) {
    if (call_depth_ >= limits_.max_call_depth) {
      return Err(absl::StrCat("macro calls nest deeper than ", limits_.max_call_depth, " levels"));
    }
    if (a.positional.size() > m.params.size()) {
      return Err(absl::StrCat("macro '", m.text, "' takes ", m.params.size(), " arguments, got ", a.positional.size()));
    }
    for (const auto& kw : a.keyword) {
      if (std::none_of(m.params.begin(), m.params.end(), [&](const auto& p) { return p.first == kw.first; })) {
        return Err(absl::StrCat("macro '", m.text, "' takes no keyword argument '", kw.first, "'"));
      }
    }
    // A macro sees the globals and the template's top level, not its caller's locals.
    std::vector<Scope> saved(std::make_move_iterator(scopes_.begin() + 2), std::make_move_iterator(scopes_.end()));
    scopes_.resize(2);
    scopes_.emplace_back();
    ++call_depth_;
    absl::Status s;
    for (size_t i = 0; i < m.params.size() && s.ok(); ++i) {
      const Value* given = Arg(a, i, m.params[i].first);
      if (given != nullptr) {
        scopes_.back()[m.params[i].first] = *given;
      } else if (m.params[i].second) {
        auto d = Eval(*m.params[i].second);
        if (d.ok()) scopes_.back()[m.params[i].first] = *d;
        else s = d.status();
      } else {
        scopes_.back()[m.params[i].first] = Value::Undefined(absl::StrCat("'", m.params[i].first, "' is undefined"));
      }
    }
    std::string body;
    absl::StatusOr<Flow> f = s.ok() ? Exec(m.body, &body) : absl::StatusOr<Flow>(s);
    --call_depth_;
    scopes_.resize(2);
    for (Scope& sc : saved) scopes_.push_back(std::move(sc));
    if (!f.ok()) return f.status();
    return Value::String(std::move(body));
  }

  // ---- expressions ----
  absl::StatusOr<Value> Eval(const Expr& e) {
    KVCC_RETURN_IF_ERROR(Locate(Step(), e.line, e.column));
    auto v = EvalInner(e);
    if (!v.ok()) return Locate(v.status(), e.line, e.column);
    if (e.kind != Expr::Kind::kName && e.kind != Expr::Kind::kLiteral && e.kind != Expr::Kind::kGetAttr &&
        e.kind != Expr::Kind::kGetItem) {
      KVCC_RETURN_IF_ERROR(Locate(Charge(*v), e.line, e.column));
    }
    return v;
  }

  absl::StatusOr<CallArgs> EvalArgs(const Expr& e, size_t first) {
    CallArgs a;
    for (size_t i = first; i < e.args.size(); ++i) {
      KVCC_ASSIGN_OR_RETURN(Value v, Eval(*e.args[i]));
      a.positional.push_back(std::move(v));
    }
    for (const auto& kw : e.kwargs) {
      KVCC_ASSIGN_OR_RETURN(Value v, Eval(*kw.second));
      a.keyword.emplace_back(kw.first, std::move(v));
    }
    return a;
  }

  absl::StatusOr<Value> EvalInner(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::kLiteral: return e.value;
      case Expr::Kind::kName: {
        const Value* v = Lookup(e.name);
        return v ? *v : Value::Undefined(absl::StrCat("'", e.name, "' is undefined"));
      }
      case Expr::Kind::kList:
      case Expr::Kind::kTuple: {
        ValueList items;
        for (const ExprPtr& a : e.args) {
          KVCC_ASSIGN_OR_RETURN(Value v, Eval(*a));
          items.push_back(std::move(v));
        }
        return MakeList(std::move(items), e.kind == Expr::Kind::kTuple);
      }
      case Expr::Kind::kDict: {
        ValueDict items;
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          KVCC_ASSIGN_OR_RETURN(Value k, Eval(*e.args[i]));
          if (!k.is_string()) return Err(absl::StrCat("dict keys must be strings, got ", TypeName(k)));
          KVCC_ASSIGN_OR_RETURN(Value v, Eval(*e.args[i + 1]));
          auto it = std::find_if(items.begin(), items.end(), [&](const auto& p) { return p.first == k.str(); });
          if (it != items.end()) it->second = std::move(v);
          else items.emplace_back(k.str(), std::move(v));
        }
        return Value::Dict(std::move(items));
      }
      case Expr::Kind::kGetAttr: {
        KVCC_ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0]));
        return GetAttr(obj, e.name);
      }
      case Expr::Kind::kGetItem: {
        KVCC_ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0]));
        KVCC_ASSIGN_OR_RETURN(Value key, Eval(*e.args[1]));
        return GetItem(obj, key);
      }
      case Expr::Kind::kSlice: return EvalSlice(e);
      case Expr::Kind::kUnary: {
        KVCC_ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
        if (e.name == "not") return Value::Bool(!Truthy(v));
        if (v.is_undefined()) return Undefined(v);
        if (!v.is_number()) return Err(absl::StrCat("bad operand type for unary ", e.name, ": '", TypeName(v), "'"));
        if (e.name == "+") return v.is_float() ? v : Value::Int(v.integer());
        if (v.is_float()) return Value::Float(-v.number());
        if (v.integer() == INT64_MIN) return Err("integer overflow");
        return Value::Int(-v.integer());
      }
      case Expr::Kind::kBinary: {
        KVCC_ASSIGN_OR_RETURN(Value l, Eval(*e.args[0]));
        KVCC_ASSIGN_OR_RETURN(Value r, Eval(*e.args[1]));
        return BinaryOp(e.name, l, r);
      }
      case Expr::Kind::kCompare: {
        KVCC_ASSIGN_OR_RETURN(Value l, Eval(*e.args[0]));
        for (size_t i = 0; i < e.ops.size(); ++i) {
          KVCC_ASSIGN_OR_RETURN(Value r, Eval(*e.args[i + 1]));
          KVCC_ASSIGN_OR_RETURN(bool ok, CompareOp(e.ops[i], l, r));
          if (!ok) return Value::Bool(false);
          l = std::move(r);
        }
        return Value::Bool(true);
      }
      case Expr::Kind::kAnd:
      case Expr::Kind::kOr: {
        KVCC_ASSIGN_OR_RETURN(Value l, Eval(*e.args[0]));
        if (Truthy(l) == (e.kind == Expr::Kind::kOr)) return l;
        return Eval(*e.args[1]);
      }
      case Expr::Kind::kCondition: {
        KVCC_ASSIGN_OR_RETURN(Value c, Eval(*e.args[0]));
        if (Truthy(c)) return Eval(*e.args[1]);
        if (e.args[2]) return Eval(*e.args[2]);
        return Value::Undefined("the conditional expression has no else branch");
      }
      case Expr::Kind::kFilter: {
        KVCC_ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
        KVCC_ASSIGN_OR_RETURN(CallArgs a, EvalArgs(e, 1));
        return Filter(e.name, v, a);
      }
      case Expr::Kind::kTest: {
        KVCC_ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
        KVCC_ASSIGN_OR_RETURN(CallArgs a, EvalArgs(e, 1));
        KVCC_ASSIGN_OR_RETURN(bool r, Test(e.name, v, a));
        return Value::Bool(r != e.negated);
      }
      case Expr::Kind::kCall: {
        KVCC_ASSIGN_OR_RETURN(Value fn, Eval(*e.args[0]));
        KVCC_ASSIGN_OR_RETURN(CallArgs a, EvalArgs(e, 1));
        if (fn.is_undefined()) return Undefined(fn);
        if (!fn.is_callable()) return Err(absl::StrCat("'", TypeName(fn), "' object is not callable"));
        return fn.function()(a);
      }
    }
    return Err("unhandled expression");
  }

  absl::StatusOr<Value> EvalSlice(const Expr& e) {
    KVCC_ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0]));
    int64_t part[3];
    bool given[3];
    for (int k = 0; k < 3; ++k) {
      given[k] = false;
      if (!e.args[k + 1]) continue;
      KVCC_ASSIGN_OR_RETURN(Value v, Eval(*e.args[k + 1]));
      if (v.is_none()) continue;
      if (!v.is_int() && !v.is_bool()) return Err("slice indices must be integers or None");
      part[k] = v.integer();
      given[k] = true;
    }
    const int64_t step = given[2] ? part[2] : 1;
    if (step == 0) return Err("slice step cannot be zero");
    if (obj.is_undefined()) return Undefined(obj);
    KVCC_RETURN_IF_ERROR(Work(obj));
    if (!obj.is_list() && !obj.is_string()) return Err(absl::StrCat("'", TypeName(obj), "' object is not subscriptable"));
    const std::u32string cps = obj.is_string() ? ToCodePoints(obj.str()) : std::u32string();
    const int64_t n = static_cast<int64_t>(obj.is_string() ? cps.size() : obj.list().size());
    // Python's slice.indices().
    auto clamp = [&](int64_t v, bool is_given, int64_t dflt) {
      if (!is_given) return dflt;
      if (v < 0) v = std::max<int64_t>(v + n, step < 0 ? -1 : 0);
      else v = std::min<int64_t>(v, step < 0 ? n - 1 : n);
      return v;
    };
    const int64_t start = clamp(given[0] ? part[0] : 0, given[0], step < 0 ? n - 1 : 0);
    const int64_t stop = clamp(given[1] ? part[1] : 0, given[1], step < 0 ? -1 : n);
    if (obj.is_string()) {
      std::string s;
      for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) AppendUtf8(cps[static_cast<size_t>(i)], &s);
      return Value::String(std::move(s));
    }
    ValueList out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.push_back(obj.list()[static_cast<size_t>(i)]);
    return MakeList(std::move(out), obj.is_tuple());
  }

  absl::StatusOr<Value> GetAttr(const Value& obj, const std::string& name) {
    if (obj.is_undefined()) return Undefined(obj);
    if (auto m = Method(obj, name)) return *m;
    if (obj.is_dict() || obj.is_namespace()) {
      if (const Value* v = obj.Find(name)) return *v;
    }
    return Value::Undefined(absl::StrCat("'", TypeName(obj), " object' has no attribute '", name, "'"));
  }

  absl::StatusOr<Value> GetItem(const Value& obj, const Value& key) {
    if (obj.is_undefined()) return Undefined(obj);
    KVCC_RETURN_IF_ERROR(Work(obj));
    if ((obj.is_dict() || obj.is_namespace()) && key.is_string()) {
      if (const Value* v = obj.Find(key.str())) return *v;
      if (auto m = Method(obj, key.str())) return *m;
    } else if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
      const std::u32string cps = obj.is_string() ? ToCodePoints(obj.str()) : std::u32string();
      int64_t i = key.integer();
      const int64_t n = static_cast<int64_t>(obj.is_string() ? cps.size() : obj.list().size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) {
        return obj.is_string() ? Value::String(EncodeUtf8(cps[static_cast<size_t>(i)])) : obj.list()[static_cast<size_t>(i)];
      }
    } else if (key.is_string()) {
      if (auto m = Method(obj, key.str())) return *m;
    }
    return Value::Undefined(absl::StrCat("'", TypeName(obj), " object' has no attribute '", PyStr(key), "'"));
  }

  absl::StatusOr<Value> BinaryOp(const std::string& op, const Value& l, const Value& r) {
    KVCC_RETURN_IF_ERROR(Work(l));
    KVCC_RETURN_IF_ERROR(Work(r));
    if (op == "~") {
      KVCC_ASSIGN_OR_RETURN(std::string a, Str(l));
      KVCC_ASSIGN_OR_RETURN(std::string b, Str(r));
      return MakeString(a + b);
    }
    if (l.is_undefined()) return Undefined(l);
    if (r.is_undefined()) return Undefined(r);
    auto unsupported = [&]() {
      return Err(absl::StrCat("unsupported operand type(s) for ", op, ": '", TypeName(l), "' and '", TypeName(r), "'"));
    };
    if (op == "+") {
      if (l.is_string() && r.is_string()) {
        KVCC_RETURN_IF_ERROR(CheckSize(static_cast<int64_t>(l.str().size() + r.str().size())));
        return Value::String(l.str() + r.str());
      }
      if (l.is_list() && r.is_list()) {
        ValueList items = l.list();
        if (static_cast<int64_t>(items.size() + r.list().size()) > limits_.max_items) return MakeList(ValueList(limits_.max_items + 1));
        items.insert(items.end(), r.list().begin(), r.list().end());
        return MakeList(std::move(items), l.is_tuple());
      }
    }
    if (op == "*" && (l.is_string() || l.is_list() || r.is_string() || r.is_list())) {
      const Value& seq = (l.is_string() || l.is_list()) ? l : r;
      const Value& count = (l.is_string() || l.is_list()) ? r : l;
      if (!count.is_int() && !count.is_bool()) return unsupported();
      const int64_t k = std::max<int64_t>(0, count.integer());
      if (seq.is_string()) {
        if (!seq.str().empty() && k > limits_.max_output_bytes / static_cast<int64_t>(seq.str().size())) {
          return CheckSize(limits_.max_output_bytes + 1);
        }
        std::string s;
        for (int64_t i = 0; i < k; ++i) s += seq.str();
        return Value::String(std::move(s));
      }
      if (!seq.list().empty() && k > limits_.max_items / static_cast<int64_t>(seq.list().size())) {
        return MakeList(ValueList(limits_.max_items + 1));
      }
      ValueList items;
      for (int64_t i = 0; i < k; ++i) items.insert(items.end(), seq.list().begin(), seq.list().end());
      return MakeList(std::move(items), seq.is_tuple());
    }
    if (!l.is_number() || !r.is_number()) return unsupported();
    const bool fl = l.is_float() || r.is_float();
    if (op == "/") {
      if (r.number() == 0) return Err("division by zero");
      return Value::Float(l.number() / r.number());
    }
    if (fl) {
      const double a = l.number(), b = r.number();
      if (op == "+") return Value::Float(a + b);
      if (op == "-") return Value::Float(a - b);
      if (op == "*") return Value::Float(a * b);
      if (op == "**") return Value::Float(std::pow(a, b));
      if (b == 0) return Err("float division by zero");
      if (op == "//") return Value::Float(std::floor(a / b));
      if (op == "%") {
        double m = std::fmod(a, b);
        if (m != 0 && ((m < 0) != (b < 0))) m += b;
        return Value::Float(m);
      }
      return unsupported();
    }
    const int64_t a = l.integer(), b = r.integer();
    int64_t out = 0;
    if (op == "+" && !__builtin_add_overflow(a, b, &out)) return Value::Int(out);
    if (op == "-" && !__builtin_sub_overflow(a, b, &out)) return Value::Int(out);
    if (op == "*" && !__builtin_mul_overflow(a, b, &out)) return Value::Int(out);
    if (op == "//" || op == "%") {
      if (b == 0) return Err("integer division or modulo by zero");
      if (a == INT64_MIN && b == -1) return Err("integer overflow");
      int64_t q = a / b, m = a % b;
      if (m != 0 && ((m < 0) != (b < 0))) {
        --q;
        m += b;
      }
      return Value::Int(op == "//" ? q : m);
    }
    if (op == "**") {
      if (b < 0) return Value::Float(std::pow(static_cast<double>(a), static_cast<double>(b)));
      int64_t result = 1, base = a, e = b;
      bool overflow = false;
      while (e > 0 && !overflow) {
        if (e & 1) overflow = __builtin_mul_overflow(result, base, &result);
        e >>= 1;
        if (e > 0 && !overflow) overflow = __builtin_mul_overflow(base, base, &base);
      }
      if (!overflow) return Value::Int(result);
    }
    return Err(absl::StrCat("integer overflow in ", a, " ", op, " ", b));
  }

  absl::StatusOr<bool> Contains(const Value& container, const Value& item) {
    KVCC_RETURN_IF_ERROR(Work(container));
    KVCC_RETURN_IF_ERROR(Work(item));
    switch (container.kind()) {
      case Value::Kind::kUndefined: return false;
      case Value::Kind::kString:
        if (!item.is_string()) {
          return Err(absl::StrCat("'in <string>' requires string as left operand, not ", TypeName(item)));
        }
        return container.str().find(item.str()) != std::string::npos;
      case Value::Kind::kList:
        return std::any_of(container.list().begin(), container.list().end(), [&](const Value& v) { return Equal(v, item); });
      case Value::Kind::kDict:
      case Value::Kind::kNamespace: return item.is_string() && container.Find(item.str()) != nullptr;
      default: return Err(absl::StrCat("argument of type '", TypeName(container), "' is not iterable"));
    }
  }

  absl::StatusOr<bool> CompareOp(const std::string& op, const Value& l, const Value& r) {
    KVCC_RETURN_IF_ERROR(Work(l));
    if (op == "==") return Equal(l, r);
    if (op == "!=") return !Equal(l, r);
    if (op == "in") return Contains(r, l);
    if (op == "not in") {
      KVCC_ASSIGN_OR_RETURN(bool in, Contains(r, l));
      return !in;
    }
    if (l.is_undefined()) return Undefined(l);
    if (r.is_undefined()) return Undefined(r);
    auto c = Compare(l, r);
    if (!c.ok()) return Err(absl::StrCat("'", op, "' not supported between instances of '", TypeName(l), "' and '", TypeName(r), "'"));
    if (op == "<") return *c < 0;
    if (op == "<=") return *c <= 0;
    if (op == ">") return *c > 0;
    return *c >= 0;
  }

  // ---- methods of str and dict, as bound callables ----
  std::optional<Value> Method(const Value& obj, const std::string& name);
  absl::StatusOr<Value> StringMethod(const std::string& s, const std::string& name, const CallArgs& a);
  absl::StatusOr<Value> Split(const std::string& s, const CallArgs& a);

  absl::StatusOr<Value> Filter(const std::string& name, const Value& v, const CallArgs& a);
  absl::StatusOr<bool> Test(const std::string& name, const Value& v, const CallArgs& a);
  // item.a.b for map/selectattr/sort(attribute=): dotted path, integer parts index.
  absl::StatusOr<Value> AttrPath(const Value& item, const std::string& path) {
    Value cur = item;
    size_t pos = 0;
    while (true) {
      const size_t dot = path.find('.', pos);
      const std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
      const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); });
      KVCC_ASSIGN_OR_RETURN(cur, GetItem(cur, digits && part.size() < 18 ? Value::Int(std::stoll(part)) : Value::String(part)));
      if (dot == std::string::npos) return cur;
      pos = dot + 1;
    }
  }
  absl::StatusOr<Value> SelectFilter(const std::string& name, const Value& v, const CallArgs& a);

  TemplateLimits limits_;
  std::vector<Scope> scopes_;
  int64_t steps_ = 0;
  int64_t alloc_ = 0;
  int call_depth_ = 0;
};

void Renderer::InstallBuiltins() {
  Scope& g = scopes_[0];
  g["range"] = Value::Callable("range", [this](const CallArgs& a) -> absl::StatusOr<Value> {
    if (a.positional.empty() || a.positional.size() > 3 || !a.keyword.empty()) return Err("range() takes 1 to 3 integer arguments");
    int64_t p[3] = {0, 0, 1};
    for (size_t i = 0; i < a.positional.size(); ++i) {
      if (!a.positional[i].is_int() && !a.positional[i].is_bool()) return Err("range() arguments must be integers");
    }
    if (a.positional.size() == 1) {
      p[1] = a.positional[0].integer();
    } else {
      for (size_t i = 0; i < a.positional.size(); ++i) p[i] = a.positional[i].integer();
    }
    if (p[2] == 0) return Err("range() arg 3 must not be zero");
    const long double count = p[2] > 0 ? std::ceil((static_cast<long double>(p[1]) - p[0]) / p[2])
                                        : std::ceil((static_cast<long double>(p[0]) - p[1]) / -p[2]);
    if (count > kMaxRange) return Err(absl::StrCat("range() of more than ", kMaxRange, " items is too big"));
    ValueList items;
    for (int64_t i = p[0]; p[2] > 0 ? i < p[1] : i > p[1]; i += p[2]) items.push_back(Value::Int(i));
    return MakeList(std::move(items));
  });
  g["namespace"] = Value::Callable("namespace", [](const CallArgs& a) -> absl::StatusOr<Value> {
    KVCC_ASSIGN_OR_RETURN(ValueDict attrs, MergedArgs(a, "namespace"));
    for (const auto& e : attrs) {
      if (e.second.is_namespace()) return Err("a namespace cannot be stored in a namespace");
    }
    return Value::Namespace(std::move(attrs));
  });
  g["dict"] = Value::Callable("dict", [](const CallArgs& a) -> absl::StatusOr<Value> {
    KVCC_ASSIGN_OR_RETURN(ValueDict items, MergedArgs(a, "dict"));
    return Value::Dict(std::move(items));
  });
  g["raise_exception"] = Value::Callable("raise_exception", [](const CallArgs& a) -> absl::StatusOr<Value> {
    const Value* msg = Arg(a, 0, "message");
    return Err(absl::StrCat("raise_exception: ", msg ? PyStr(*msg) : ""));
  });
  g["strftime_now"] = Value::Callable("strftime_now", [](const CallArgs& a) -> absl::StatusOr<Value> {
    KVCC_ASSIGN_OR_RETURN(std::string fmt, StringArg(a, 0, "format", "strftime_now"));
    if (fmt.size() > 256) return Err("strftime_now() format is longer than 256 bytes");
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[1024];
    const size_t n = std::strftime(buf, sizeof(buf), fmt.c_str(), &tm);
    return Value::String(std::string(buf, n));
  });
}

std::optional<Value> Renderer::Method(const Value& obj, const std::string& name) {
  static const char* kStringMethods[] = {"capitalize", "endswith", "find", "join", "lower", "lstrip", "replace",
                                         "rstrip", "split", "startswith", "strip", "title", "upper"};
  if (obj.is_string() && Known(name, std::begin(kStringMethods), std::end(kStringMethods))) {
    return Value::Callable(name, [this, s = obj, name](const CallArgs& a) { return StringMethod(s.str(), name, a); });
  }
  if (obj.is_dict() && (name == "items" || name == "keys" || name == "values" || name == "get")) {
    return Value::Callable(name, [this, d = obj, name](const CallArgs& a) -> absl::StatusOr<Value> {
      if (name == "get") {
        const Value* key = Arg(a, 0, "key");
        if (key == nullptr) return Err("get() takes a key");
        const Value* found = key->is_string() ? d.Find(key->str()) : nullptr;
        if (found) return *found;
        const Value* dflt = Arg(a, 1, "default");
        return dflt ? *dflt : Value::None();
      }
      ValueList out;
      for (const auto& e : d.dict()) {
        if (name == "keys") {
          out.push_back(Value::String(e.first));
        } else if (name == "values") {
          out.push_back(e.second);
        } else {
          KVCC_ASSIGN_OR_RETURN(Value pair, Value::List({Value::String(e.first), e.second}, /*tuple=*/true));
          out.push_back(std::move(pair));
        }
      }
      return MakeList(std::move(out));
    });
  }
  return std::nullopt;
}

absl::StatusOr<Value> Renderer::Split(const std::string& s, const CallArgs& a) {
  const Value* sep = Arg(a, 0, "sep");
  KVCC_ASSIGN_OR_RETURN(int64_t maxsplit, IntArg(a, 1, "maxsplit", -1));
  ValueList out;
  if (sep == nullptr || sep->is_none()) {  // runs of whitespace, none at the ends
    const std::u32string cps = ToCodePoints(s);
    size_t i = 0;
    while (i < cps.size()) {
      while (i < cps.size() && IsPySpace(cps[i])) ++i;
      if (i >= cps.size()) break;
      size_t j = i;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) >= maxsplit) {
        j = cps.size();
        while (j > i && IsPySpace(cps[j - 1])) --j;
      } else {
        while (j < cps.size() && !IsPySpace(cps[j])) ++j;
      }
      std::string word;
      for (size_t k = i; k < j; ++k) AppendUtf8(cps[k], &word);
      out.push_back(Value::String(std::move(word)));
      if (static_cast<int64_t>(out.size()) > limits_.max_items) break;
      i = j;
    }
    return MakeList(std::move(out));
  }
  if (!sep->is_string()) return Err("split() separator must be a string or None");
  if (sep->str().empty()) return Err("split(): empty separator");
  size_t pos = 0;
  while (true) {
    const size_t hit = (maxsplit >= 0 && static_cast<int64_t>(out.size()) >= maxsplit) ? std::string::npos : s.find(sep->str(), pos);
    if (hit == std::string::npos) {
      out.push_back(Value::String(s.substr(pos)));
      break;
    }
    out.push_back(Value::String(s.substr(pos, hit - pos)));
    if (static_cast<int64_t>(out.size()) > limits_.max_items) break;
    pos = hit + sep->str().size();
  }
  return MakeList(std::move(out));
}

absl::StatusOr<Value> Renderer::StringMethod(const std::string& s, const std::string& name, const CallArgs& a) {
  steps_ += static_cast<int64_t>(s.size() / 32);
  KVCC_RETURN_IF_ERROR(Step());
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const Value* chars = Arg(a, 0, "chars");
    std::optional<std::string> set;
    if (chars != nullptr && !chars->is_none()) {
      if (!chars->is_string()) return Err(absl::StrCat(name, "() argument must be a string or None"));
      set = chars->str();
    }
    return Value::String(PyStrip(s, name != "rstrip", name != "lstrip", set));
  }
  if (name == "upper" || name == "lower") return Value::String(AsciiMap(s, name == "upper"));
  if (name == "title") return Value::String(Title(s));
  if (name == "capitalize") return Value::String(Capitalize(s));
  if (name == "startswith" || name == "endswith") {
    const Value* p = Arg(a, 0, "prefix");
    if (p == nullptr) return Err(absl::StrCat(name, "() takes a string or a tuple of strings"));
    ValueList options = p->is_list() ? p->list() : ValueList{*p};
    for (const Value& o : options) {
      if (!o.is_string()) return Err(absl::StrCat(name, "() takes a string or a tuple of strings"));
      if (name == "startswith" ? absl::StartsWith(s, o.str()) : absl::EndsWith(s, o.str())) return Value::Bool(true);
    }
    return Value::Bool(false);
  }
  if (name == "split") return Split(s, a);
  if (name == "replace") {
    KVCC_ASSIGN_OR_RETURN(std::string from, StringArg(a, 0, "old", "replace"));
    KVCC_ASSIGN_OR_RETURN(std::string to, StringArg(a, 1, "new", "replace"));
    KVCC_ASSIGN_OR_RETURN(int64_t count, IntArg(a, 2, "count", -1));
    KVCC_RETURN_IF_ERROR(CheckSize(ReplaceSize(s, from, to)));
    return Value::String(ReplaceAll(s, from, to, count));
  }
  if (name == "find") {
    KVCC_ASSIGN_OR_RETURN(std::string sub, StringArg(a, 0, "sub", "find"));
    const size_t hit = s.find(sub);
    if (hit == std::string::npos) return Value::Int(-1);
    return Value::Int(static_cast<int64_t>(ToCodePoints(s.substr(0, hit)).size()));
  }
  if (name == "join") {
    const Value* items = Arg(a, 0, "iterable");
    if (items == nullptr) return Err("join() takes an iterable");
    KVCC_ASSIGN_OR_RETURN(ValueList parts, Iterate(*items));
    std::string out;
    for (size_t i = 0; i < parts.size(); ++i) {
      if (!parts[i].is_string()) return Err(absl::StrCat("join(): item ", i, " is a ", TypeName(parts[i]), ", not a string"));
      KVCC_RETURN_IF_ERROR(CheckSize(static_cast<int64_t>(out.size() + s.size() + parts[i].str().size())));
      if (i > 0) out += s;
      out += parts[i].str();
    }
    return Value::String(std::move(out));
  }
  return Err(absl::StrCat("unsupported str method '", name, "'"));
}

absl::StatusOr<bool> Renderer::Test(const std::string& name, const Value& v, const CallArgs& a) {
  const Value* other = Arg(a, 0, "other");
  auto need_other = [&]() -> absl::Status {
    return other ? absl::OkStatus() : Err(absl::StrCat("test '", name, "' takes an argument"));
  };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.boolean();
  if (name == "false") return v.is_bool() && !v.boolean();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "mapping") return v.is_dict();
  if (name == "iterable" || name == "sequence") return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
  if (name == "callable") return v.is_callable();
  if (name == "lower") return v.is_string() && AsciiMap(v.str(), false) == v.str();
  if (name == "upper") return v.is_string() && AsciiMap(v.str(), true) == v.str();
  if (name == "odd" || name == "even" || name == "divisibleby") {
    if (!v.is_int() && !v.is_bool()) return Err(absl::StrCat("test '", name, "' needs an integer, got ", TypeName(v)));
    if (name != "divisibleby") return (v.integer() % 2 != 0) == (name == "odd");
    const Value* n = Arg(a, 0, "num");
    if (n == nullptr || !(n->is_int() || n->is_bool()) || n->integer() == 0) return Err("divisibleby needs a non-zero integer");
    return v.integer() % n->integer() == 0;
  }
  if (name == "sameas") {
    KVCC_RETURN_IF_ERROR(need_other());
    if (v.kind() != other->kind()) return false;
    if (v.is_none() || v.is_undefined()) return true;
    if (v.is_bool()) return v.boolean() == other->boolean();
    return Equal(v, *other) && (v.is_int() || v.is_float());  // small numbers are interned in CPython
  }
  if (name == "in") {
    const Value* seq = Arg(a, 0, "seq");
    if (seq == nullptr) return Err("test 'in' takes an argument");
    return Contains(*seq, v);
  }
  KVCC_RETURN_IF_ERROR(need_other());
  std::string op = name;
  if (op == "eq" || op == "equalto") op = "==";
  if (op == "ne") op = "!=";
  if (op == "lt") op = "<";
  if (op == "le") op = "<=";
  if (op == "gt") op = ">";
  if (op == "ge") op = ">=";
  return CompareOp(op, v, *other);
}

absl::StatusOr<Value> Renderer::SelectFilter(const std::string& name, const Value& v, const CallArgs& a) {
  const bool by_attr = name == "selectattr" || name == "rejectattr";
  const bool keep_when = name == "select" || name == "selectattr";
  size_t next = 0;
  std::string attr;
  if (by_attr) {
    if (a.positional.empty() || !a.positional[0].is_string()) return Err(absl::StrCat(name, "() takes an attribute name"));
    attr = a.positional[0].str();
    next = 1;
  }
  std::optional<std::string> test;
  if (a.positional.size() > next) {
    if (!a.positional[next].is_string()) return Err(absl::StrCat(name, "(): the test must be named by a string"));
    test = a.positional[next].str();
    if (!Known(*test, std::begin(kTests), std::end(kTests))) return Err(absl::StrCat("unsupported test '", *test, "'"));
  }
  CallArgs test_args;
  for (size_t i = next + 1; i < a.positional.size(); ++i) test_args.positional.push_back(a.positional[i]);
  KVCC_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  ValueList out;
  for (const Value& item : items) {
    KVCC_RETURN_IF_ERROR(Step());
    Value subject = item;
    if (by_attr) {
      KVCC_ASSIGN_OR_RETURN(subject, AttrPath(item, attr));
    }
    bool pass;
    if (test) {
      KVCC_ASSIGN_OR_RETURN(pass, Test(*test, subject, test_args));
    } else {
      pass = Truthy(subject);
    }
    if (pass == keep_when) out.push_back(item);
  }
  return MakeList(std::move(out));
}

absl::StatusOr<Value> Renderer::Filter(const std::string& name, const Value& v, const CallArgs& a) {
  KVCC_RETURN_IF_ERROR(Work(v));
  if (name == "default" || name == "d") {
    const Value* dflt = Arg(a, 0, "default_value");
    const bool boolean = BoolArg(a, 1, "boolean", false);
    if (v.is_undefined() || (boolean && !Truthy(v))) return dflt ? *dflt : Value::String("");
    return v;
  }
  if (name == "safe") return v;
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") return SelectFilter(name, v, a);
  if (name == "tojson") {
    JsonDumpOptions o;
    o.ensure_ascii = BoolArg(a, 0, "ensure_ascii", false);
    if (const Value* indent = Arg(a, 1, "indent"); indent != nullptr && !indent->is_none()) {
      if (indent->is_string()) {
        o.indent_string = indent->str();
      } else if (indent->is_int() && !indent->is_bool()) {
        o.indent = static_cast<int>(std::clamp<int64_t>(indent->integer(), 0, 64));
      } else {
        return Err("tojson(): indent must be an integer, a string or None");
      }
    }
    if (const Value* sep = Arg(a, 2, "separators"); sep != nullptr && !sep->is_none()) {
      if (!sep->is_list() || sep->list().size() != 2 || !sep->list()[0].is_string() || !sep->list()[1].is_string()) {
        return Err("tojson(): separators must be a pair of strings");
      }
      o.separators = std::make_pair(sep->list()[0].str(), sep->list()[1].str());
    }
    o.sort_keys = BoolArg(a, 3, "sort_keys", false);
    KVCC_ASSIGN_OR_RETURN(std::string s, JsonDumps(v, o, static_cast<size_t>(limits_.max_output_bytes)));
    return MakeString(std::move(s));
  }
  if (name == "map") {
    KVCC_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
    ValueList out;
    const Value* attr = Arg(a, 99, "attribute");
    if (attr != nullptr) {
      if (!attr->is_string()) return Err("map(attribute=...) must be a string");
      const Value* dflt = Arg(a, 99, "default");
      for (const Value& item : items) {
        KVCC_RETURN_IF_ERROR(Step());
        KVCC_ASSIGN_OR_RETURN(Value got, AttrPath(item, attr->str()));
        out.push_back(got.is_undefined() && dflt ? *dflt : got);
      }
      return MakeList(std::move(out));
    }
    if (a.positional.empty() || !a.positional[0].is_string()) return Err("map() takes a filter name or attribute=");
    const std::string filter = a.positional[0].str();
    if (!Known(filter, std::begin(kFilters), std::end(kFilters)) || filter == "map") {
      return Err(absl::StrCat("map(): unsupported filter '", filter, "'"));
    }
    CallArgs rest;
    rest.positional.assign(a.positional.begin() + 1, a.positional.end());
    rest.keyword = a.keyword;
    for (const Value& item : items) {
      KVCC_RETURN_IF_ERROR(Step());
      KVCC_ASSIGN_OR_RETURN(Value got, Filter(filter, item, rest));
      out.push_back(std::move(got));
    }
    return MakeList(std::move(out));
  }
  if (name == "length" || name == "count") {
    if (v.is_string()) return Value::Int(static_cast<int64_t>(ToCodePoints(v.str()).size()));
    if (v.is_list()) return Value::Int(static_cast<int64_t>(v.list().size()));
    if (v.is_dict() || v.is_namespace()) return Value::Int(static_cast<int64_t>(v.dict().size()));
    if (v.is_undefined()) return Value::Int(0);
    return Err(absl::StrCat("object of type '", TypeName(v), "' has no len()"));
  }
  if (name == "list") {
    KVCC_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
    return MakeList(std::move(items));
  }
  if (name == "first" || name == "last") {
    KVCC_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
    if (items.empty()) return Value::Undefined(absl::StrCat("'", name, "' of an empty sequence is undefined"));
    return name == "first" ? items.front() : items.back();
  }
  if (name == "reverse") {
    if (v.is_string()) {
      std::u32string cps = ToCodePoints(v.str());
      std::reverse(cps.begin(), cps.end());
      std::string out;
      for (char32_t c : cps) AppendUtf8(c, &out);
      return Value::String(std::move(out));
    }
    KVCC_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
    std::reverse(items.begin(), items.end());
    return MakeList(std::move(items));
  }
  if (name == "items") {
    if (v.is_undefined()) return MakeList({});
    if (!v.is_dict()) return Err(absl::StrCat("items(): expected a dict, got ", TypeName(v)));
    return (*Method(v, "items")).function()(CallArgs());
  }
  if (name == "join") {
    KVCC_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
    const Value* sep = Arg(a, 0, "d");
    const Value* attr = Arg(a, 1, "attribute");
    std::string sep_text = sep ? PyStr(*sep) : "";
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      Value item = items[i];
      if (attr != nullptr) {
        if (!attr->is_string()) return Err("join(attribute=...) must be a string");
        KVCC_ASSIGN_OR_RETURN(item, AttrPath(item, attr->str()));
      }
      KVCC_ASSIGN_OR_RETURN(std::string s, Str(item));
      KVCC_RETURN_IF_ERROR(CheckSize(static_cast<int64_t>(out.size() + sep_text.size() + s.size())));
      if (i > 0) out += sep_text;
      out += s;
    }
    return Value::String(std::move(out));
  }
  if (name == "sort" || name == "unique") {
    KVCC_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
    const bool reverse = name == "sort" && BoolArg(a, 0, "reverse", false);
    const bool case_sensitive = BoolArg(a, name == "sort" ? 1 : 0, "case_sensitive", false);
    const Value* attr = Arg(a, name == "sort" ? 2 : 1, "attribute");
    std::vector<Value> keys;
    for (const Value& item : items) {
      Value key = item;
      if (attr != nullptr && attr->is_string()) {
        KVCC_ASSIGN_OR_RETURN(key, AttrPath(item, attr->str()));
      }
      if (!case_sensitive && key.is_string()) key = Value::String(AsciiMap(key.str(), false));
      keys.push_back(std::move(key));
    }
    if (name == "unique") {
      ValueList out, seen;
      for (size_t i = 0; i < items.size(); ++i) {
        KVCC_RETURN_IF_ERROR(Step());
        if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return Equal(s, keys[i]); })) {
          seen.push_back(keys[i]);
          out.push_back(items[i]);
        }
      }
      return MakeList(std::move(out));
    }
    std::vector<size_t> order(items.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    absl::Status error;
    std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) {
      if (!error.ok()) return false;
      auto c = Compare(keys[x], keys[y]);
      if (!c.ok()) {
        error = c.status();
        return false;
      }
      return reverse ? *c > 0 : *c < 0;
    });
    KVCC_RETURN_IF_ERROR(error);
    ValueList out;
    for (size_t i : order) out.push_back(items[i]);
    return MakeList(std::move(out));
  }
  if (name == "int" || name == "float") {
    const Value* dflt = Arg(a, 0, "default");
    const Value fallback = dflt ? *dflt : (name == "int" ? Value::Int(0) : Value::Float(0));
    double d = 0;
    if (v.is_number()) {
      d = v.number();
      if (name == "int" && !v.is_float()) return Value::Int(v.integer());
    } else if (v.is_string()) {
      std::string s = PyStrip(v.str(), true, true);
      s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
      char* end = nullptr;
      errno = 0;
      if (name == "int") {
        const long long i = std::strtoll(s.c_str(), &end, 10);
        if (!s.empty() && end == s.c_str() + s.size() && errno != ERANGE) return Value::Int(i);
      }
      d = std::strtod(s.c_str(), &end);
      if (s.empty() || end != s.c_str() + s.size()) return fallback;
    } else {
      return fallback;
    }
    if (name == "float") return Value::Float(d);
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return fallback;
    return Value::Int(static_cast<int64_t>(d));
  }
  if (name == "abs") {
    if (v.is_float()) return Value::Float(std::fabs(v.number()));
    if (!v.is_number()) return Err(absl::StrCat("bad operand type for abs(): '", TypeName(v), "'"));
    if (v.integer() == INT64_MIN) return Err("integer overflow");
    return Value::Int(std::llabs(v.integer()));
  }
  // The rest work on str(v).
  KVCC_ASSIGN_OR_RETURN(std::string s, Str(v));
  if (name == "string") return Value::String(std::move(s));
  if (name == "trim") {
    const Value* chars = Arg(a, 0, "chars");
    std::optional<std::string> set;
    if (chars != nullptr && !chars->is_none()) set = PyStr(*chars);
    return Value::String(PyStrip(s, true, true, set));
  }
  if (name == "lower" || name == "upper") return Value::String(AsciiMap(s, name == "upper"));
  if (name == "capitalize") return Value::String(Capitalize(s));
  if (name == "title") return Value::String(Title(s));
  if (name == "replace") {
    const Value* from = Arg(a, 0, "old");
    const Value* to = Arg(a, 1, "new");
    if (from == nullptr || to == nullptr) return Err("replace() takes old and new");
    KVCC_ASSIGN_OR_RETURN(int64_t count, IntArg(a, 2, "count", -1));
    const std::string f = PyStr(*from), t = PyStr(*to);
    KVCC_RETURN_IF_ERROR(CheckSize(ReplaceSize(s, f, t)));
    return Value::String(ReplaceAll(s, f, t, count));
  }
  if (name == "e" || name == "escape") {
    std::string out;
    for (char c : s) {
      switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&#34;"; break;
        case '\'': out += "&#39;"; break;
        default: out.push_back(c);
      }
    }
    return MakeString(std::move(out));
  }
  if (name == "indent") {  // jinja2 3.1's do_indent
    const Value* width = Arg(a, 0, "width");
    std::string pad = width == nullptr ? "    " : (width->is_string() ? width->str() : std::string());
    if (width != nullptr && !width->is_string()) {
      if (!width->is_int()) return Err("indent(): width must be an integer or a string");
      pad.assign(static_cast<size_t>(std::clamp<int64_t>(width->integer(), 0, 256)), ' ');
    }
    const bool first = BoolArg(a, 1, "first", false);
    const bool blank = BoolArg(a, 2, "blank", false);
    std::vector<std::string> lines;
    s += "\n";
    size_t pos = 0;
    while (pos < s.size()) {
      const size_t nl = s.find_first_of("\r\n", pos);
      lines.push_back(s.substr(pos, nl - pos));
      pos = nl + ((s[nl] == '\r' && nl + 1 < s.size() && s[nl + 1] == '\n') ? 2 : 1);
    }
    KVCC_RETURN_IF_ERROR(CheckSize(static_cast<int64_t>(s.size() + lines.size() * (pad.size() + 1))));
    std::string out = first ? pad : "";
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i > 0) {
        out += "\n";
        if (blank || !lines[i].empty()) out += pad;
      }
      out += lines[i];
    }
    return Value::String(std::move(out));
  }
  return Err(absl::StrCat("unsupported filter '", name, "'"));
}

}  // namespace

absl::StatusOr<Template> Template::Parse(absl::string_view source, std::string name, const TemplateLimits& limits) {
  auto prefixed = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat(name, ": chat template ", s.message()));
  };
  auto tokens = Lex(source);
  if (!tokens.ok()) return prefixed(tokens.status());
  auto root = jinja::Parse(*tokens);
  if (!root.ok()) return prefixed(root.status());
  if (auto s = CheckNames(*root); !s.ok()) return prefixed(s);
  Template t;
  t.name_ = std::move(name);
  t.limits_ = limits;
  t.root_ = std::make_shared<const NodeList>(std::move(*root));
  return t;
}

absl::StatusOr<std::string> Template::Render(const ValueDict& globals) const {
  Renderer r(limits_);
  auto out = r.Run(*root_, globals);
  if (!out.ok()) return absl::Status(out.status().code(), absl::StrCat(name_, ": chat template ", out.status().message()));
  return out;
}

}  // namespace kvcc::tokenizer::jinja
