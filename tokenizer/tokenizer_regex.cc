#include "tokenizer/tokenizer_regex.h"

#include <re2/re2.h>

#include "absl/strings/str_cat.h"
#include "tokenizer/utf8.h"

namespace kvcc::tokenizer {
namespace {

// Oniguruma's Unicode classes (its documentation: "Space", "Word"), spelled for RE2.
constexpr const char kSpace[] = "\\t-\\r\\x{85}\\p{Z}";
constexpr const char kWord[] = "\\p{L}\\p{M}\\p{Nd}\\p{Pc}";
constexpr const char kHex[] = "0-9a-fA-F";

absl::Status Unsupported(absl::string_view what) {
  return absl::InvalidArgumentError(what);
}

// The class `body` as an escape would stand for it: inline inside a [...] class, bracketed
// (negated when `negate`) outside; a negated one cannot be merged into an enclosing class.
absl::Status AppendClass(const char* body, bool negate, bool in_class, char escape,
                         std::string* out) {
  if (in_class) {
    if (negate) {
      return Unsupported(absl::StrCat("\\", std::string(1, escape),
                                      " inside [...] (RE2 cannot express it with Unicode meaning)"));
    }
    absl::StrAppend(out, body);
  } else {
    absl::StrAppend(out, negate ? "[^" : "[", body, "]");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> OnigurumaToRe2(absl::string_view p) {
  // Oniguruma (Ruby syntax) anchors ^ and $ at every line; RE2 needs multi-line mode for that.
  std::string out = "(?m)";
  bool in_class = false;
  size_t class_first = 0;  // index of the first member of the open class (a ']' there is literal)
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\') {
      if (i + 1 >= p.size()) return Unsupported("a trailing lone backslash");
      const char e = p[++i];
      absl::Status s;
      switch (e) {
        case 's': case 'S': s = AppendClass(kSpace, e == 'S', in_class, e, &out); break;
        case 'w': case 'W': s = AppendClass(kWord, e == 'W', in_class, e, &out); break;
        case 'h': case 'H': s = AppendClass(kHex, e == 'H', in_class, e, &out); break;
        case 'd': out += "\\p{Nd}"; break;
        case 'D': out += "\\P{Nd}"; break;
        case 'b': case 'B':
          return Unsupported(absl::StrCat("\\", std::string(1, e),
                                          " (RE2's word boundary is ASCII-only)"));
        default:
          out += '\\';
          out += e;
      }
      if (!s.ok()) return s;
      continue;
    }
    if (in_class) {
      if (c == '[') {
        return Unsupported("a nested or POSIX class inside [...] (its meaning differs in RE2)");
      }
      if (c == ']' && i != class_first) in_class = false;
      out += c;
      continue;
    }
    if (c == '[') {
      in_class = true;
      out += c;
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      class_first = i + 1;
      continue;
    }
    if (c == '(' && i + 1 < p.size() && p[i + 1] == '?') {
      // Inline flags "(?imx-imx)" / "(?i:...)": Ruby's m is RE2's s (dot matches newline).
      size_t j = i + 2;
      std::string flags;
      while (j < p.size() && (p[j] == 'i' || p[j] == 'm' || p[j] == 'x' || p[j] == '-' ||
                              p[j] == 's')) {
        if (p[j] == 's') return Unsupported("the inline flag s (not an Oniguruma Ruby-syntax flag)");
        if (p[j] == 'x') return Unsupported("the inline flag x (extended syntax)");
        flags += p[j] == 'm' ? 's' : p[j];
        ++j;
      }
      if (!flags.empty() && j < p.size() && (p[j] == ')' || p[j] == ':')) {
        absl::StrAppend(&out, "(?", flags);
        i = j - 1;
        continue;
      }
    }
    out += c;
  }
  return out;
}

TokenizerRegex::TokenizerRegex(std::string pattern, std::unique_ptr<re2::RE2> re)
    : pattern_(std::move(pattern)), re_(std::move(re)) {}
TokenizerRegex::~TokenizerRegex() = default;

absl::StatusOr<std::unique_ptr<TokenizerRegex>> TokenizerRegex::Compile(
    absl::string_view pattern, absl::string_view source, absl::string_view role) {
  auto refuse = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": ", role, " regex \"", pattern, "\" cannot be run by RE2, kvcc's linear-time ",
        "regex engine: ", why));
  };
  auto translated = OnigurumaToRe2(pattern);
  if (!translated.ok()) return refuse(translated.status().message());
  re2::RE2::Options options;
  options.set_log_errors(false);
  options.set_encoding(re2::RE2::Options::EncodingUTF8);
  auto re = std::make_unique<re2::RE2>(*translated, options);
  if (!re->ok()) return refuse(re->error());
  return std::unique_ptr<TokenizerRegex>(new TokenizerRegex(std::string(pattern), std::move(re)));
}

std::vector<std::pair<size_t, size_t>> TokenizerRegex::FindAll(absl::string_view text) const {
  std::vector<std::pair<size_t, size_t>> spans;
  const re2::StringPiece input(text.data(), text.size());
  size_t pos = 0;
  bool have_last = false;
  size_t last_end = 0;
  while (pos <= text.size()) {
    re2::StringPiece m;
    if (!re_->Match(input, pos, text.size(), re2::RE2::UNANCHORED, &m, 1)) break;
    const size_t b = static_cast<size_t>(m.data() - text.data()), e = b + m.size();
    if (b == e && have_last && last_end == e) {
      // As Oniguruma's find_iter: step one character past an empty match at the last end.
      if (pos >= text.size()) break;
      const size_t n = Utf8SequenceLength(text, pos);
      pos += n == 0 ? 1 : n;
      continue;
    }
    spans.emplace_back(b, e);
    have_last = true;
    last_end = e;
    pos = e;
  }
  return spans;
}

}  // namespace kvcc::tokenizer
