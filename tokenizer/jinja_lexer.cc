#include "tokenizer/jinja_lexer.h"

#include <cerrno>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"
#include "tokenizer/jinja_value.h"
#include "tokenizer/utf8.h"

namespace kvcc::tokenizer::jinja {
namespace {

class Lexer {
 public:
  Lexer(std::string src, const LexOptions& o) : s_(std::move(src)), o_(o) {}

  absl::StatusOr<std::vector<Token>> Run() {
    size_t pos = 0;
    bool line_starting = true;
    while (pos <= s_.size()) {
      size_t p = s_.find('{', pos);
      while (p != std::string::npos && (p + 1 >= s_.size() || (s_[p + 1] != '{' && s_[p + 1] != '%' && s_[p + 1] != '#'))) {
        p = s_.find('{', p + 1);
      }
      std::string text = s_.substr(pos, p == std::string::npos ? std::string::npos : p - pos);
      if (p == std::string::npos) {
        EmitText(std::move(text), pos);
        break;
      }
      const char kind = s_[p + 1];
      const char mod = p + 2 < s_.size() ? s_[p + 2] : '\0';
      if (mod == '-') {
        text = RStripSpace(text);
      } else if (mod != '+' && kind != '{' && o_.lstrip_blocks) {
        // lstrip_blocks: whitespace between the line start and a block or comment goes.
        const size_t l_pos = text.rfind('\n') + 1;  // npos + 1 == 0
        if ((l_pos > 0 || line_starting) && l_pos < text.size() &&
            text.find_first_not_of(" \t\f\v", l_pos) == std::string::npos) {
          text.resize(l_pos);
        }
      }
      EmitText(std::move(text), pos);
      const size_t body = p + 2 + ((mod == '-' || mod == '+') ? 1 : 0);
      size_t end = 0;  // first byte after the closing delimiter
      char end_mod = '\0';
      if (kind == '#') {
        const size_t close = s_.find("#}", body);
        if (close == std::string::npos) return Error(p, "unterminated comment (missing #})");
        if (close > body && (s_[close - 1] == '-' || s_[close - 1] == '+')) end_mod = s_[close - 1];
        end = close + 2;
      } else {
        const TokenType begin = kind == '{' ? TokenType::kVariableBegin : TokenType::kBlockBegin;
        Push(begin, kind == '{' ? "{{" : "{%", p);
        KVCC_ASSIGN_OR_RETURN(auto e, LexTag(body, kind == '{', &end_mod));
        end = e;
      }
      pos = end;
      line_starting = false;
      if (end_mod == '-') {
        size_t q = pos;
        while (q < s_.size() && IsSpaceAt(q)) q += Utf8SequenceLength(s_, q);
        line_starting = q > pos && s_[q - 1] == '\n';
        pos = q;
      } else if (end_mod != '+' && kind != '{' && o_.trim_blocks && pos < s_.size() && s_[pos] == '\n') {
        ++pos;
        line_starting = true;
      }
    }
    Push(TokenType::kEnd, "", s_.size());
    return std::move(tokens_);
  }

 private:
  bool IsSpaceAt(size_t q) const {
    size_t i = q;
    return IsPySpace(DecodeUtf8At(s_, &i));
  }

  std::string RStripSpace(const std::string& text) const { return PyStrip(text, false, true); }

  void Position(size_t offset, int* line, int* col) const {
    // Tokens are created in order, so a running cursor keeps this linear overall.
    if (offset < cursor_) {
      cursor_ = 0;
      cursor_line_ = 1;
      cursor_col_ = 1;
    }
    for (; cursor_ < offset && cursor_ < s_.size(); ++cursor_) {
      if (s_[cursor_] == '\n') {
        ++cursor_line_;
        cursor_col_ = 1;
      } else if ((static_cast<unsigned char>(s_[cursor_]) & 0xC0) != 0x80) {
        ++cursor_col_;
      }
    }
    *line = cursor_line_;
    *col = cursor_col_;
  }

  absl::Status Error(size_t offset, absl::string_view what) const {
    int line, col;
    Position(offset, &line, &col);
    return absl::InvalidArgumentError(absl::StrCat("line ", line, ", column ", col, ": ", what));
  }

  Token& Push(TokenType t, std::string text, size_t offset) {
    Token tok;
    tok.type = t;
    tok.text = std::move(text);
    Position(offset, &tok.line, &tok.column);
    tokens_.push_back(std::move(tok));
    return tokens_.back();
  }

  void EmitText(std::string text, size_t offset) {
    if (!text.empty()) Push(TokenType::kText, std::move(text), offset);
  }

  // Tokens of one {{ }} or {% %} tag from `pos`; returns the offset after the closing delimiter.
  absl::StatusOr<size_t> LexTag(size_t pos, bool variable, char* end_mod) {
    std::string brackets;  // open ( [ { : inside them a closing delimiter is not one
    const char close0 = variable ? '}' : '%';
    while (true) {
      while (pos < s_.size() && (s_[pos] == ' ' || s_[pos] == '\t' || s_[pos] == '\n' || s_[pos] == '\r')) ++pos;
      if (pos >= s_.size()) return Error(pos, variable ? "unexpected end of template: missing }}" : "unexpected end of template: missing %}");
      if (brackets.empty()) {
        for (char m : {'-', '+', '\0'}) {
          if (variable && m == '+') continue;
          const size_t at = pos + (m ? 1 : 0);
          if ((m == 0 || s_[pos] == m) && at + 1 < s_.size() + 0 && s_[at] == close0 && s_[at + 1] == '}') {
            *end_mod = m;
            Push(variable ? TokenType::kVariableEnd : TokenType::kBlockEnd, variable ? "}}" : "%}", pos);
            return at + 2;
          }
        }
      }
      const char c = s_[pos];
      if (absl::ascii_isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = pos;
        while (e < s_.size() && (absl::ascii_isalnum(static_cast<unsigned char>(s_[e])) || s_[e] == '_')) ++e;
        Push(TokenType::kName, s_.substr(pos, e - pos), pos);
        pos = e;
      } else if (absl::ascii_isdigit(static_cast<unsigned char>(c))) {
        auto e = LexNumber(pos);
        if (!e.ok()) return e.status();
        pos = *e;
      } else if (c == '\'' || c == '"') {
        KVCC_ASSIGN_OR_RETURN(auto e, LexString(pos));
        pos = e;
      } else {
        static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">",
                                     "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", ";"};
        const char* op = nullptr;
        for (const char* candidate : kOps) {
          if (s_.compare(pos, std::char_traits<char>::length(candidate), candidate) == 0) {
            op = candidate;
            break;
          }
        }
        if (op == nullptr) return Error(pos, absl::StrCat("unexpected character '", std::string(1, c), "' in a tag"));
        const std::string o = op;
        if (o == "(" || o == "[" || o == "{") {
          brackets.push_back(o[0]);
        } else if (o == ")" || o == "]" || o == "}") {
          const char want = o == ")" ? '(' : (o == "]" ? '[' : '{');
          if (brackets.empty() || brackets.back() != want) return Error(pos, absl::StrCat("unexpected '", o, "'"));
          brackets.pop_back();
        }
        Push(TokenType::kOperator, o, pos);
        pos += o.size();
      }
    }
  }

  absl::StatusOr<size_t> LexNumber(size_t pos) {
    auto digits = [&](size_t p) {
      if (p >= s_.size() || !absl::ascii_isdigit(static_cast<unsigned char>(s_[p]))) return p;
      while (p < s_.size() && (absl::ascii_isdigit(static_cast<unsigned char>(s_[p])) ||
                               (s_[p] == '_' && p + 1 < s_.size() && absl::ascii_isdigit(static_cast<unsigned char>(s_[p + 1]))))) {
        ++p;
      }
      return p;
    };
    size_t e = digits(pos);
    bool is_float = false;
    if (e + 1 < s_.size() && s_[e] == '.' && absl::ascii_isdigit(static_cast<unsigned char>(s_[e + 1]))) {
      e = digits(e + 1);
      is_float = true;
    }
    if (e < s_.size() && (s_[e] == 'e' || s_[e] == 'E')) {
      size_t x = e + 1;
      if (x < s_.size() && (s_[x] == '+' || s_[x] == '-')) ++x;
      const size_t xe = digits(x);
      if (xe > x) {
        e = xe;
        is_float = true;
      }
    }
    std::string text;
    for (size_t i = pos; i < e; ++i) {
      if (s_[i] != '_') text.push_back(s_[i]);
    }
    Token& t = Push(is_float ? TokenType::kFloat : TokenType::kInteger, text, pos);
    errno = 0;
    if (is_float) {
      t.number = std::strtod(text.c_str(), nullptr);
    } else {
      t.integer = std::strtoll(text.c_str(), nullptr, 10);
      if (errno == ERANGE) return Error(pos, absl::StrCat("integer ", text, " is out of range"));
    }
    return e;
  }

  // A quoted string with Python's escapes (jinja2 decodes them with "unicode-escape").
  absl::StatusOr<size_t> LexString(size_t pos) {
    const char q = s_[pos];
    std::string out;
    size_t i = pos + 1;
    while (true) {
      if (i >= s_.size()) return Error(pos, "unterminated string");
      const char c = s_[i];
      if (c == q) break;
      if (c != '\\') {
        out.push_back(c);
        ++i;
        continue;
      }
      if (i + 1 >= s_.size()) return Error(pos, "unterminated string");
      const char e = s_[i + 1];
      i += 2;
      switch (e) {
        case '\n': break;  // line continuation
        case '\\': out.push_back('\\'); break;
        case '\'': out.push_back('\''); break;
        case '"': out.push_back('"'); break;
        case 'a': out.push_back('\a'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'v': out.push_back('\v'); break;
        case 'x':
        case 'u':
        case 'U': {
          const int n = e == 'x' ? 2 : (e == 'u' ? 4 : 8);
          uint32_t cp = 0;
          for (int k = 0; k < n; ++k, ++i) {
            if (i >= s_.size() || !absl::ascii_isxdigit(static_cast<unsigned char>(s_[i]))) {
              return Error(i, absl::StrCat("truncated \\", std::string(1, e), " escape in a string"));
            }
            cp = cp * 16 + static_cast<uint32_t>(std::strtol(std::string(1, s_[i]).c_str(), nullptr, 16));
          }
          if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return Error(i, "escape is not a valid code point");
          AppendUtf8(cp, &out);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = e - '0';
            for (int k = 0; k < 2 && i < s_.size() && s_[i] >= '0' && s_[i] <= '7'; ++k, ++i) cp = cp * 8 + (s_[i] - '0');
            AppendUtf8(cp, &out);
          } else {  // Python keeps an unknown escape as written
            out.push_back('\\');
            i -= 1;
          }
      }
    }
    Push(TokenType::kString, std::move(out), pos);
    return i + 1;
  }

  std::string s_;
  LexOptions o_;
  std::vector<Token> tokens_;
  mutable size_t cursor_ = 0;
  mutable int cursor_line_ = 1, cursor_col_ = 1;
};

}  // namespace

absl::StatusOr<std::vector<Token>> Lex(absl::string_view source, const LexOptions& options) {
  if (!IsValidUtf8(source)) return absl::InvalidArgumentError("the template is not valid UTF-8");
  std::string s;
  s.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {  // \r\n and \r become \n, as jinja2 reads lines
    if (source[i] == '\r') {
      s.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      s.push_back(source[i]);
    }
  }
  if (!s.empty() && s.back() == '\n') s.pop_back();  // keep_trailing_newline=False
  return Lexer(std::move(s), options).Run();
}

}  // namespace kvcc::tokenizer::jinja
