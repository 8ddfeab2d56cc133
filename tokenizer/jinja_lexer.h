// Splits a Jinja template into text and tag tokens the way jinja2's lexer does as transformers
// configures it: newlines normalised to "\n", one trailing newline dropped, comments removed,
// and whitespace control ({%- -%}, {%+, trim_blocks, lstrip_blocks) applied to the text.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvcc::tokenizer::jinja {

enum class TokenType {
  kText,           // template data, whitespace control already applied
  kVariableBegin,  // {{
  kVariableEnd,    // }}
  kBlockBegin,     // {%
  kBlockEnd,       // %}
  kName,
  kString,  // text holds the decoded value
  kInteger,
  kFloat,
  kOperator,  // text holds the operator: + - * / // % ** ~ == != < <= > >= = ( ) [ ] { } , . : |
  kEnd,
};

struct Token {
  TokenType type;
  std::string text;
  int64_t integer = 0;
  double number = 0;
  int line = 1;
  int column = 1;
};

struct LexOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

// Errors (an unterminated tag, string or comment, an unexpected character, unbalanced brackets,
// a template that is not UTF-8) name the line and column.
absl::StatusOr<std::vector<Token>> Lex(absl::string_view source, const LexOptions& options = {});

}  // namespace kvcc::tokenizer::jinja
