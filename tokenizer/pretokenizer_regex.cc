#include "tokenizer/pretokenizer_regex.h"

#include "tokenizer/unicode_category.h"

namespace kvcc::tokenizer {
namespace {

constexpr const char* kGpt2Source =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3Source =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Source =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

bool IsL(char32_t c) { return IsUnicodeLetter(c); }
bool IsN(char32_t c) { return IsUnicodeNumber(c); }
bool IsS(char32_t c) { return IsUnicodeWhitespace(c); }
bool IsCrLf(char32_t c) { return c == '\r' || c == '\n'; }
bool IsOther(char32_t c) { return !IsS(c) && !IsL(c) && !IsN(c); }

char32_t Lower(char32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

// 's|'t|'re|'ve|'m|'ll|'d at i: the match length or 0.
size_t MatchContraction(const std::u32string& t, size_t i, bool ignore_case) {
  if (t[i] != '\'') return 0;
  auto ch = [&](size_t k) -> char32_t {
    if (k >= t.size()) return 0;
    return ignore_case ? Lower(t[k]) : t[k];
  };
  const char32_t a = ch(i + 1), b = ch(i + 2);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if ((a == 'r' || a == 'v') && b == 'e') return 3;
  if (a == 'l' && b == 'l') return 3;
  return 0;
}

size_t RunOf(const std::u32string& t, size_t i, bool (*pred)(char32_t)) {
  size_t j = i;
  while (j < t.size() && pred(t[j])) ++j;
  return j;
}

// \s+(?!\S) then \s+ : the end of the whitespace match at i (t[i] is whitespace).
size_t MatchWhitespace(const std::u32string& t, size_t i) {
  const size_t j = RunOf(t, i, IsS);
  if (j == t.size()) return j;        // (?!\S) holds at the end of text
  if (j - i >= 2) return j - 1;       // give one back so a space can lead the next word
  return j;                           // plain \s+
}

size_t MatchGpt2(const std::u32string& t, size_t i) {
  if (size_t n = MatchContraction(t, i, /*ignore_case=*/false)) return i + n;
  const size_t k = (t[i] == ' ' && i + 1 < t.size()) ? i + 1 : i;  // optional leading space
  for (size_t start : {k, i}) {
    if (start >= t.size()) continue;
    if (IsL(t[start])) return RunOf(t, start, IsL);
    if (IsN(t[start])) return RunOf(t, start, IsN);
    if (IsOther(t[start])) return RunOf(t, start, IsOther);
  }
  return MatchWhitespace(t, i);
}

size_t MatchLlama3(const std::u32string& t, size_t i, size_t max_digits) {
  if (size_t n = MatchContraction(t, i, /*ignore_case=*/true)) return i + n;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (IsL(t[i])) return RunOf(t, i, IsL);
  if (!IsCrLf(t[i]) && !IsN(t[i]) && i + 1 < t.size() && IsL(t[i + 1])) return RunOf(t, i + 1, IsL);
  // \p{N}{1,max}
  if (IsN(t[i])) {
    size_t j = i;
    while (j < t.size() && j - i < max_digits && IsN(t[j])) ++j;
    return j;
  }
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  {
    const size_t k = (t[i] == ' ') ? i + 1 : i;
    if (k < t.size() && IsOther(t[k])) return RunOf(t, RunOf(t, k, IsOther), IsCrLf);
  }
  // \s*[\r\n]+ : ends after the last CR/LF of the whitespace run.
  const size_t j = RunOf(t, i, IsS);
  for (size_t k = j; k > i; --k) {
    if (IsCrLf(t[k - 1])) return k;
  }
  return MatchWhitespace(t, i);
}

}  // namespace

std::optional<PretokenizerPattern> RecognizePretokenizerPattern(absl::string_view regex) {
  if (regex == kGpt2Source) return PretokenizerPattern::kGpt2;
  if (regex == kLlama3Source) return PretokenizerPattern::kLlama3;
  if (regex == kQwen2Source) return PretokenizerPattern::kQwen2;
  return std::nullopt;
}

const char* PretokenizerPatternSource(PretokenizerPattern pattern) {
  switch (pattern) {
    case PretokenizerPattern::kGpt2: return kGpt2Source;
    case PretokenizerPattern::kLlama3: return kLlama3Source;
    case PretokenizerPattern::kQwen2: return kQwen2Source;
  }
  return "";
}

std::vector<std::pair<size_t, size_t>> FindPretokenMatches(PretokenizerPattern pattern,
                                                           const std::u32string& text) {
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t i = 0; i < text.size();) {
    size_t end = 0;
    switch (pattern) {
      case PretokenizerPattern::kGpt2: end = MatchGpt2(text, i); break;
      case PretokenizerPattern::kLlama3: end = MatchLlama3(text, i, 3); break;
      case PretokenizerPattern::kQwen2: end = MatchLlama3(text, i, 1); break;
    }
    if (end <= i) end = i + 1;  // unreachable for these patterns; guarantees progress
    out.emplace_back(i, end);
    i = end;
  }
  return out;
}

}  // namespace kvcc::tokenizer
