// The syntax tree of a Jinja chat template and the parser that builds it from jinja_lexer's
// tokens, with jinja2's operator precedence. Unsupported tags, filters and tests are refused
// here, naming the line and column, as jinja2 refuses unknown ones when it compiles.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tokenizer/jinja_lexer.h"
#include "tokenizer/jinja_value.h"

namespace kvcc::tokenizer::jinja {

// Trees nest at most this deep (expressions and blocks together), which bounds the recursion
// of the parser, the renderer and the tree's destructor.
inline constexpr int kMaxTreeDepth = 96;

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,    // value
    kName,       // name
    kList,       // args = items
    kTuple,      // args = items
    kDict,       // args = key, value, key, value...
    kGetAttr,    // args[0].name
    kGetItem,    // args[0][args[1]]
    kSlice,      // args[0][args[1]:args[2]:args[3]], absent parts null
    kUnary,      // name ("not", "-", "+") args[0]
    kBinary,     // args[0] name args[1]: + - * / // % ** ~
    kCompare,    // args[0] ops[0] args[1] ops[1] args[2]...: == != < <= > >= in "not in"
    kAnd,
    kOr,
    kCondition,  // args[1] if args[0] else args[2] (args[2] null: undefined)
    kFilter,     // args[0] | name(args[1:], kwargs)
    kTest,       // args[0] is [not] name(args[1:])
    kCall,       // args[0](args[1:], kwargs)
  };
  Kind kind;
  int line = 0, column = 0;
  int depth = 1;
  Value value;
  std::string name;
  bool negated = false;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
};

struct Node;
using NodeList = std::vector<std::unique_ptr<Node>>;

struct Node {
  enum class Kind {
    kText,      // text
    kOutput,    // {{ expr }}
    kIf,        // branches (condition, body); else_body
    kFor,       // for targets in expr [if cond]: body; else_body
    kSet,       // set name[.attr] = expr  (targets: several names unpack expr)
    kSetBlock,  // set name %}body{% endset
    kMacro,     // macro name(params): body
    kBreak,
    kContinue,
    kBlock,     // a body rendered in place ({% generation %})
  };
  Kind kind;
  int line = 0, column = 0;
  std::string text;
  std::string attr;
  ExprPtr expr;
  ExprPtr cond;
  std::vector<std::pair<ExprPtr, NodeList>> branches;
  NodeList body, else_body;
  std::vector<std::string> targets;
  std::vector<std::pair<std::string, ExprPtr>> params;  // default null when none
};

absl::StatusOr<NodeList> Parse(const std::vector<Token>& tokens);

}  // namespace kvcc::tokenizer::jinja
