#include "tokenizer/jinja_parser.h"

#include <algorithm>
#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"

namespace kvcc::tokenizer::jinja {
namespace {

class Parser {
 public:
  explicit Parser(const std::vector<Token>& t) : t_(t) {}

  absl::StatusOr<NodeList> Run() {
    NodeList out;
    std::string end;
    KVCC_RETURN_IF_ERROR(ParseBody({}, &out, &end, 0));
    return out;
  }

 private:
  const Token& Cur() const { return t_[std::min(i_, t_.size() - 1)]; }
  const Token& Peek(size_t k = 1) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  bool IsOp(absl::string_view op) const { return Cur().type == TokenType::kOperator && Cur().text == op; }
  bool IsName(absl::string_view n) const { return Cur().type == TokenType::kName && Cur().text == n; }

  absl::Status ErrorAt(const Token& t, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("line ", t.line, ", column ", t.column, ": ", what));
  }
  absl::Status Unexpected(absl::string_view wanted) const {
    const Token& t = Cur();
    std::string got = t.type == TokenType::kEnd ? "end of template" : absl::StrCat("'", t.text, "'");
    if (t.type == TokenType::kBlockEnd) got = "'%}'";
    if (t.type == TokenType::kVariableEnd) got = "'}}'";
    return ErrorAt(t, absl::StrCat("expected ", wanted, ", got ", got));
  }
  absl::Status ExpectOp(absl::string_view op) {
    if (!IsOp(op)) return Unexpected(absl::StrCat("'", op, "'"));
    ++i_;
    return absl::OkStatus();
  }
  absl::Status ExpectBlockEnd() {
    if (Cur().type != TokenType::kBlockEnd) return Unexpected("'%}'");
    ++i_;
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ExpectName() {
    if (Cur().type != TokenType::kName) return Unexpected("a name");
    return t_[i_++].text;
  }

  ExprPtr New(Expr::Kind k, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = at.line;
    e->column = at.column;
    return e;
  }
  // Finishes a node: its depth from its children, refused beyond kMaxTreeDepth.
  absl::StatusOr<ExprPtr> Done(ExprPtr e) {
    for (const ExprPtr& a : e->args) {
      if (a) e->depth = std::max(e->depth, a->depth + 1);
    }
    for (const auto& kw : e->kwargs) e->depth = std::max(e->depth, kw.second->depth + 1);
    if (e->depth + block_depth_ > kMaxTreeDepth) {
      return absl::InvalidArgumentError(absl::StrCat("line ", e->line, ", column ", e->column,
                                                     ": expression nests deeper than ", kMaxTreeDepth, " levels"));
    }
    return e;
  }

  // Statements until one of `ends` (an {% name %} tag, left unconsumed in *end) or the end.
  absl::Status ParseBody(std::initializer_list<absl::string_view> ends, NodeList* out, std::string* end, int depth) {
    if (depth > kMaxTreeDepth / 2) return ErrorAt(Cur(), absl::StrCat("blocks nest deeper than ", kMaxTreeDepth / 2, " levels"));
    block_depth_ = depth;
    while (true) {
      const Token& t = Cur();
      if (t.type == TokenType::kEnd) {
        if (ends.size() == 0) return absl::OkStatus();
        return ErrorAt(t, absl::StrCat("unexpected end of template: missing {% ", *ends.begin(), " %}"));
      }
      if (t.type == TokenType::kText) {
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::kText;
        n->text = t.text;
        out->push_back(std::move(n));
        ++i_;
        continue;
      }
      if (t.type == TokenType::kVariableBegin) {
        ++i_;
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::kOutput;
        n->line = t.line;
        n->column = t.column;
        KVCC_ASSIGN_OR_RETURN(n->expr, ParseExpression());
        if (Cur().type != TokenType::kVariableEnd) return Unexpected("'}}'");
        ++i_;
        out->push_back(std::move(n));
        continue;
      }
      if (t.type != TokenType::kBlockBegin) return Unexpected("template data or a tag");
      const Token& name = Peek();
      if (name.type != TokenType::kName) {
        ++i_;
        return Unexpected("a statement name");
      }
      for (absl::string_view e : ends) {
        if (name.text == e) {
          *end = name.text;
          i_ += 2;
          block_depth_ = depth - 1;
          return absl::OkStatus();
        }
      }
      i_ += 2;
      KVCC_RETURN_IF_ERROR(ParseStatement(name, out, depth));
      block_depth_ = depth;
    }
  }

  std::unique_ptr<Node> NewNode(Node::Kind k, const Token& at) {
    auto n = std::make_unique<Node>();
    n->kind = k;
    n->line = at.line;
    n->column = at.column;
    return n;
  }

  // Closes a block whose body ended at {% `end` %}: an {% else %} part up to {% `end_tag` %}
  // first when `end` is "else", then the end tag's %}; appends the node to `out`.
  absl::Status FinishBlock(std::unique_ptr<Node> n, std::string end, const char* end_tag, NodeList* out, int depth) {
    if (end == "else") {
      KVCC_RETURN_IF_ERROR(ExpectBlockEnd());
      KVCC_RETURN_IF_ERROR(ParseBody({end_tag}, &n->else_body, &end, depth + 1));
    }
    KVCC_RETURN_IF_ERROR(ExpectBlockEnd());
    out->push_back(std::move(n));
    return absl::OkStatus();
  }
  // After the opening tag's %}: the body up to {% `end_tag` %}, then that tag's %}.
  absl::Status ParseSimpleBlock(std::unique_ptr<Node> n, const char* end_tag, NodeList* out, int depth) {
    std::string end;
    KVCC_RETURN_IF_ERROR(ParseBody({end_tag}, &n->body, &end, depth + 1));
    return FinishBlock(std::move(n), end, end_tag, out, depth);
  }

  absl::Status ParseStatement(const Token& name, NodeList* out, int depth) {
    const std::string& s = name.text;
    std::string end;
    if (s == "if") {
      auto n = NewNode(Node::Kind::kIf, name);
      while (true) {
        KVCC_ASSIGN_OR_RETURN(ExprPtr cond, ParseExpression());
        KVCC_RETURN_IF_ERROR(ExpectBlockEnd());
        NodeList body;
        KVCC_RETURN_IF_ERROR(ParseBody({"elif", "else", "endif"}, &body, &end, depth + 1));
        n->branches.emplace_back(std::move(cond), std::move(body));
        if (end != "elif") break;
      }
      return FinishBlock(std::move(n), end, "endif", out, depth);
    }
    if (s == "for") {
      auto n = NewNode(Node::Kind::kFor, name);
      do {
        KVCC_ASSIGN_OR_RETURN(std::string target, ExpectName());
        n->targets.push_back(target);
      } while (IsOp(",") && (++i_, true));
      if (!IsName("in")) return Unexpected("'in'");
      ++i_;
      KVCC_ASSIGN_OR_RETURN(n->expr, ParseTupleOr(/*with_condition=*/false));
      if (IsName("if")) {
        ++i_;
        KVCC_ASSIGN_OR_RETURN(n->cond, ParseExpression());
      }
      if (IsName("recursive")) return ErrorAt(Cur(), "recursive for loops are not supported");
      KVCC_RETURN_IF_ERROR(ExpectBlockEnd());
      KVCC_RETURN_IF_ERROR(ParseBody({"else", "endfor"}, &n->body, &end, depth + 1));
      return FinishBlock(std::move(n), end, "endfor", out, depth);
    }
    if (s == "set") {
      auto n = NewNode(Node::Kind::kSet, name);
      KVCC_ASSIGN_OR_RETURN(n->text, ExpectName());
      if (IsOp(".")) {
        ++i_;
        KVCC_ASSIGN_OR_RETURN(n->attr, ExpectName());
      } else {
        n->targets.push_back(n->text);
        while (IsOp(",")) {
          ++i_;
          KVCC_ASSIGN_OR_RETURN(std::string target, ExpectName());
          n->targets.push_back(target);
        }
      }
      if (Cur().type == TokenType::kBlockEnd && n->attr.empty() && n->targets.size() == 1) {
        ++i_;
        n->kind = Node::Kind::kSetBlock;
        return ParseSimpleBlock(std::move(n), "endset", out, depth);
      }
      KVCC_RETURN_IF_ERROR(ExpectOp("="));
      KVCC_ASSIGN_OR_RETURN(n->expr, ParseTupleOr(/*with_condition=*/true));
      KVCC_RETURN_IF_ERROR(ExpectBlockEnd());
      out->push_back(std::move(n));
      return absl::OkStatus();
    }
    if (s == "macro") {
      auto n = NewNode(Node::Kind::kMacro, name);
      KVCC_ASSIGN_OR_RETURN(n->text, ExpectName());
      KVCC_RETURN_IF_ERROR(ExpectOp("("));
      while (!IsOp(")")) {
        if (!n->params.empty()) KVCC_RETURN_IF_ERROR(ExpectOp(","));
        KVCC_ASSIGN_OR_RETURN(std::string param, ExpectName());
        ExprPtr def;
        if (IsOp("=")) {
          ++i_;
          KVCC_ASSIGN_OR_RETURN(def, ParseExpression());
        }
        n->params.emplace_back(param, std::move(def));
      }
      ++i_;
      KVCC_RETURN_IF_ERROR(ExpectBlockEnd());
      return ParseSimpleBlock(std::move(n), "endmacro", out, depth);
    }
    if (s == "break" || s == "continue") {
      out->push_back(NewNode(s == "break" ? Node::Kind::kBreak : Node::Kind::kContinue, name));
      return ExpectBlockEnd();
    }
    if (s == "generation") {  // transformers' assistant-mask extension: renders its body
      auto n = NewNode(Node::Kind::kBlock, name);
      KVCC_RETURN_IF_ERROR(ExpectBlockEnd());
      return ParseSimpleBlock(std::move(n), "endgeneration", out, depth);
    }
    return ErrorAt(name, absl::StrCat("unsupported or misplaced tag {% ", s, " %}"));
  }

  // An expression, or a tuple "a, b" (for `for` iterables and `set`).
  absl::StatusOr<ExprPtr> ParseTupleOr(bool with_condition) {
    const Token& at = Cur();
    KVCC_ASSIGN_OR_RETURN(ExprPtr first, with_condition ? ParseExpression() : ParseOr());
    if (!IsOp(",")) return first;
    ExprPtr tuple = New(Expr::Kind::kTuple, at);
    tuple->args.push_back(std::move(first));
    while (IsOp(",")) {
      ++i_;
      if (Cur().type == TokenType::kBlockEnd || IsName("if")) break;
      KVCC_ASSIGN_OR_RETURN(ExprPtr e, with_condition ? ParseExpression() : ParseOr());
      tuple->args.push_back(std::move(e));
    }
    return Done(std::move(tuple));
  }

  absl::StatusOr<ExprPtr> ParseExpression() {
    const Token& at = Cur();
    KVCC_ASSIGN_OR_RETURN(ExprPtr e, ParseOr());
    while (IsName("if")) {
      ++i_;
      ExprPtr c = New(Expr::Kind::kCondition, at);
      KVCC_ASSIGN_OR_RETURN(ExprPtr cond, ParseOr());
      ExprPtr otherwise;
      if (IsName("else")) {
        ++i_;
        KVCC_ASSIGN_OR_RETURN(otherwise, ParseExpression());
      }
      c->args.push_back(std::move(cond));
      c->args.push_back(std::move(e));
      c->args.push_back(std::move(otherwise));
      KVCC_ASSIGN_OR_RETURN(e, Done(std::move(c)));
    }
    return e;
  }

  absl::StatusOr<ExprPtr> ParseOr() { return Binary(&Parser::ParseAnd, {"or"}, Expr::Kind::kOr); }
  absl::StatusOr<ExprPtr> ParseAnd() { return Binary(&Parser::ParseNot, {"and"}, Expr::Kind::kAnd); }

  absl::StatusOr<ExprPtr> ParseNot() {
    if (IsName("not")) {
      ExprPtr n = New(Expr::Kind::kUnary, Cur());
      n->name = "not";
      ++i_;
      KVCC_RETURN_IF_ERROR(Enter());
      auto operand = ParseNot();
      --nesting_;
      if (!operand.ok()) return operand.status();
      n->args.push_back(std::move(*operand));
      return Done(std::move(n));
    }
    return ParseCompare();
  }

  absl::StatusOr<ExprPtr> ParseCompare() {
    const Token& at = Cur();
    KVCC_ASSIGN_OR_RETURN(ExprPtr e, ParseMath1());
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (Cur().type == TokenType::kOperator &&
          (Cur().text == "==" || Cur().text == "!=" || Cur().text == "<" || Cur().text == "<=" ||
           Cur().text == ">" || Cur().text == ">=")) {
        op = Cur().text;
        ++i_;
      } else if (IsName("in")) {
        op = "in";
        ++i_;
      } else if (IsName("not") && Peek().type == TokenType::kName && Peek().text == "in") {
        op = "not in";
        i_ += 2;
      } else {
        break;
      }
      if (!cmp) {
        cmp = New(Expr::Kind::kCompare, at);
        cmp->args.push_back(std::move(e));
      }
      KVCC_ASSIGN_OR_RETURN(ExprPtr r, ParseMath1());
      cmp->ops.push_back(op);
      cmp->args.push_back(std::move(r));
    }
    if (!cmp) return e;
    return Done(std::move(cmp));
  }

  // Left-associative operators over operands parsed by `next`: operator tokens for kBinary
  // (the node's name is the operator), the keywords "and" / "or" for kAnd / kOr.
  absl::StatusOr<ExprPtr> Binary(absl::StatusOr<ExprPtr> (Parser::*next)(), std::initializer_list<const char*> ops,
                                 Expr::Kind kind = Expr::Kind::kBinary) {
    const TokenType type = kind == Expr::Kind::kBinary ? TokenType::kOperator : TokenType::kName;
    KVCC_ASSIGN_OR_RETURN(ExprPtr e, (this->*next)());
    while (Cur().type == type && std::any_of(ops.begin(), ops.end(), [&](const char* o) { return Cur().text == o; })) {
      ExprPtr n = New(kind, Cur());
      if (kind == Expr::Kind::kBinary) n->name = Cur().text;
      ++i_;
      KVCC_ASSIGN_OR_RETURN(ExprPtr r, (this->*next)());
      n->args.push_back(std::move(e));
      n->args.push_back(std::move(r));
      KVCC_ASSIGN_OR_RETURN(e, Done(std::move(n)));
    }
    return e;
  }
  absl::StatusOr<ExprPtr> ParseMath1() { return Binary(&Parser::ParseConcat, {"+", "-"}); }
  absl::StatusOr<ExprPtr> ParseConcat() { return Binary(&Parser::ParseMath2, {"~"}); }
  absl::StatusOr<ExprPtr> ParseMath2() { return Binary(&Parser::ParsePow, {"*", "/", "//", "%"}); }
  absl::StatusOr<ExprPtr> ParsePow() { return Binary(&Parser::ParseUnaryWithFilters, {"**"}); }
  absl::StatusOr<ExprPtr> ParseUnaryWithFilters() { return ParseUnary(true); }

  absl::Status Enter() {
    if (++nesting_ > kMaxTreeDepth) {
      return ErrorAt(Cur(), absl::StrCat("expression nests deeper than ", kMaxTreeDepth, " levels"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter) {
    KVCC_RETURN_IF_ERROR(Enter());
    auto e = ParseUnaryInner(with_filter);
    --nesting_;
    return e;
  }

  absl::StatusOr<ExprPtr> ParseUnaryInner(bool with_filter) {
    ExprPtr e;
    if (IsOp("-") || IsOp("+")) {
      ExprPtr n = New(Expr::Kind::kUnary, Cur());
      n->name = Cur().text;
      ++i_;
      KVCC_ASSIGN_OR_RETURN(ExprPtr operand, ParseUnary(false));
      n->args.push_back(std::move(operand));
      KVCC_ASSIGN_OR_RETURN(e, Done(std::move(n)));
    } else {
      KVCC_ASSIGN_OR_RETURN(e, ParsePrimary());
    }
    KVCC_ASSIGN_OR_RETURN(e, ParsePostfix(std::move(e)));
    if (!with_filter) return e;
    while (true) {
      if (IsOp("|")) {
        ++i_;
        ExprPtr f = New(Expr::Kind::kFilter, Cur());
        KVCC_ASSIGN_OR_RETURN(f->name, ExpectName());
        f->args.push_back(std::move(e));
        if (IsOp("(")) KVCC_RETURN_IF_ERROR(ParseCallArgs(f.get()));
        KVCC_ASSIGN_OR_RETURN(e, Done(std::move(f)));
      } else if (IsName("is")) {
        ++i_;
        ExprPtr t = New(Expr::Kind::kTest, Cur());
        if (IsName("not")) {
          t->negated = true;
          ++i_;
        }
        KVCC_ASSIGN_OR_RETURN(t->name, ExpectName());
        t->args.push_back(std::move(e));
        if (IsOp("(")) {
          KVCC_RETURN_IF_ERROR(ParseCallArgs(t.get()));
        } else if ((Cur().type == TokenType::kName || Cur().type == TokenType::kString ||
                    Cur().type == TokenType::kInteger || Cur().type == TokenType::kFloat || IsOp("[") || IsOp("{")) &&
                   !IsName("else") && !IsName("or") && !IsName("and") && !IsName("is") && !IsName("if") &&
                   !IsName("in") && !IsName("not")) {
          KVCC_ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
          KVCC_ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
          t->args.push_back(std::move(arg));
        }
        KVCC_ASSIGN_OR_RETURN(e, Done(std::move(t)));
      } else if (IsOp("(")) {
        KVCC_ASSIGN_OR_RETURN(e, ParseCall(std::move(e)));
      } else {
        return e;
      }
    }
  }

  // callee(args...)
  absl::StatusOr<ExprPtr> ParseCall(ExprPtr callee) {
    ExprPtr c = New(Expr::Kind::kCall, Cur());
    c->args.push_back(std::move(callee));
    KVCC_RETURN_IF_ERROR(ParseCallArgs(c.get()));
    return Done(std::move(c));
  }

  // "(a, b, k=v)" appended to e->args / e->kwargs.
  absl::Status ParseCallArgs(Expr* e) {
    KVCC_RETURN_IF_ERROR(ExpectOp("("));
    bool first = true;
    while (!IsOp(")")) {
      if (!first) {
        KVCC_RETURN_IF_ERROR(ExpectOp(","));
        if (IsOp(")")) break;
      }
      first = false;
      if (IsOp("*") || IsOp("**")) return ErrorAt(Cur(), "*args and **kwargs in calls are not supported");
      if (Cur().type == TokenType::kName && Peek().type == TokenType::kOperator && Peek().text == "=") {
        std::string key = Cur().text;
        i_ += 2;
        KVCC_ASSIGN_OR_RETURN(ExprPtr v, ParseExpression());
        e->kwargs.emplace_back(std::move(key), std::move(v));
      } else {
        if (!e->kwargs.empty()) return ErrorAt(Cur(), "a positional argument follows a keyword argument");
        KVCC_ASSIGN_OR_RETURN(ExprPtr v, ParseExpression());
        e->args.push_back(std::move(v));
      }
    }
    ++i_;
    return absl::OkStatus();
  }

  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr e) {
    while (true) {
      if (IsOp(".")) {
        ++i_;
        ExprPtr n = New(Expr::Kind::kGetAttr, Cur());
        if (Cur().type == TokenType::kInteger) {  // x.0 is x[0]
          n->kind = Expr::Kind::kGetItem;
          ExprPtr idx = New(Expr::Kind::kLiteral, Cur());
          idx->value = Value::Int(Cur().integer);
          ++i_;
          n->args.push_back(std::move(e));
          n->args.push_back(std::move(idx));
        } else {
          KVCC_ASSIGN_OR_RETURN(n->name, ExpectName());
          n->args.push_back(std::move(e));
        }
        KVCC_ASSIGN_OR_RETURN(e, Done(std::move(n)));
      } else if (IsOp("[")) {
        const Token& at = Cur();
        ++i_;
        ExprPtr parts[3];
        int colons = 0;
        while (true) {
          if (IsOp(":")) {
            if (++colons > 2) return Unexpected("']'");
            ++i_;
            continue;
          }
          if (IsOp("]")) break;
          if (parts[colons]) return Unexpected("':' or ']'");
          KVCC_ASSIGN_OR_RETURN(parts[colons], ParseExpression());
        }
        ++i_;
        ExprPtr n = New(colons == 0 ? Expr::Kind::kGetItem : Expr::Kind::kSlice, at);
        n->args.push_back(std::move(e));
        if (colons == 0) {
          if (!parts[0]) return ErrorAt(at, "empty subscript");
          n->args.push_back(std::move(parts[0]));
        } else {
          for (auto& p : parts) n->args.push_back(std::move(p));
        }
        KVCC_ASSIGN_OR_RETURN(e, Done(std::move(n)));
      } else if (IsOp("(")) {
        KVCC_ASSIGN_OR_RETURN(e, ParseCall(std::move(e)));
      } else {
        return e;
      }
    }
  }

  absl::StatusOr<ExprPtr> ParsePrimary() {
    const Token& t = Cur();
    switch (t.type) {
      case TokenType::kName: {
        ++i_;
        ExprPtr e = New(Expr::Kind::kLiteral, t);
        if (t.text == "true" || t.text == "True") {
          e->value = Value::Bool(true);
        } else if (t.text == "false" || t.text == "False") {
          e->value = Value::Bool(false);
        } else if (t.text == "none" || t.text == "None") {
          e->value = Value::None();
        } else {
          e->kind = Expr::Kind::kName;
          e->name = t.text;
        }
        return e;
      }
      case TokenType::kString: {
        std::string s;
        while (Cur().type == TokenType::kString) s += t_[i_++].text;  // adjacent strings join
        ExprPtr e = New(Expr::Kind::kLiteral, t);
        e->value = Value::String(std::move(s));
        return e;
      }
      case TokenType::kInteger:
      case TokenType::kFloat: {
        ++i_;
        ExprPtr e = New(Expr::Kind::kLiteral, t);
        e->value = t.type == TokenType::kInteger ? Value::Int(t.integer) : Value::Float(t.number);
        return e;
      }
      case TokenType::kOperator:
        if (t.text == "(") {
          ++i_;
          if (IsOp(")")) {
            ++i_;
            return Done(New(Expr::Kind::kTuple, t));
          }
          KVCC_ASSIGN_OR_RETURN(ExprPtr first, ParseExpression());
          if (IsOp(")")) {
            ++i_;
            return first;
          }
          ExprPtr tuple = New(Expr::Kind::kTuple, t);
          tuple->args.push_back(std::move(first));
          while (IsOp(",")) {
            ++i_;
            if (IsOp(")")) break;
            KVCC_ASSIGN_OR_RETURN(ExprPtr e, ParseExpression());
            tuple->args.push_back(std::move(e));
          }
          KVCC_RETURN_IF_ERROR(ExpectOp(")"));
          return Done(std::move(tuple));
        }
        if (t.text == "[" || t.text == "{") {
          const bool dict = t.text == "{";
          const char* close = dict ? "}" : "]";
          ++i_;
          ExprPtr e = New(dict ? Expr::Kind::kDict : Expr::Kind::kList, t);
          while (!IsOp(close)) {
            if (!e->args.empty()) {
              KVCC_RETURN_IF_ERROR(ExpectOp(","));
              if (IsOp(close)) break;
            }
            KVCC_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
            e->args.push_back(std::move(item));
            if (dict) {
              KVCC_RETURN_IF_ERROR(ExpectOp(":"));
              KVCC_ASSIGN_OR_RETURN(ExprPtr v, ParseExpression());
              e->args.push_back(std::move(v));
            }
          }
          ++i_;
          return Done(std::move(e));
        }
        break;
      default:
        break;
    }
    return Unexpected("an expression");
  }

  const std::vector<Token>& t_;
  size_t i_ = 0;
  int nesting_ = 0;
  int block_depth_ = 0;
};

}  // namespace

absl::StatusOr<NodeList> Parse(const std::vector<Token>& tokens) {
  if (tokens.empty() || tokens.back().type != TokenType::kEnd) {
    return absl::InvalidArgumentError("token list does not end with kEnd");
  }
  return Parser(tokens).Run();
}

}  // namespace kvcc::tokenizer::jinja
