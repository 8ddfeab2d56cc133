#include "tokenizer/added_token_matcher.h"

#include <algorithm>

#include "tokenizer/unicode_category.h"
#include "tokenizer/utf8.h"

namespace kvcc::tokenizer {
namespace {

// The code point ending just before byte offset `end` (0 if none).
char32_t CodePointBefore(absl::string_view s, size_t end) {
  if (end == 0) return 0;
  size_t start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  size_t pos = start;
  return DecodeUtf8At(s, &pos);
}

char32_t CodePointAt(absl::string_view s, size_t pos) {
  if (pos >= s.size()) return 0;
  return DecodeUtf8At(s, &pos);
}

bool IsWordChar(char32_t c) { return c != 0 && (IsUnicodeLetter(c) || IsUnicodeNumber(c)); }

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  for (size_t i = 0; i < tokens_.size(); ++i) {
    if (tokens_[i].content.empty()) continue;
    by_first_byte_[static_cast<unsigned char>(tokens_[i].content[0])].push_back(i);
  }
  for (auto& [byte, list] : by_first_byte_) {
    std::stable_sort(list.begin(), list.end(), [&](size_t a, size_t b) {
      return tokens_[a].content.size() > tokens_[b].content.size();
    });
  }
}

std::vector<TextChunk> AddedTokenMatcher::Split(
    absl::string_view text, bool at_text_start,
    const std::function<bool(const AddedToken&)>& include) const {
  std::vector<TextChunk> out;
  size_t plain_start = 0;  // start of the text not yet emitted
  auto emit_plain = [&](size_t end) {
    if (end > plain_start) {
      out.push_back({std::string(text.substr(plain_start, end - plain_start)), -1,
                     at_text_start && plain_start == 0});
    }
  };
  size_t i = 0;
  while (i < text.size()) {
    const AddedToken* found = nullptr;
    auto it = by_first_byte_.find(static_cast<unsigned char>(text[i]));
    if (it != by_first_byte_.end()) {
      for (size_t idx : it->second) {
        const AddedToken& t = tokens_[idx];
        if (text.compare(i, t.content.size(), t.content) != 0 || !include(t)) continue;
        found = &t;  // longest first
        break;
      }
    }
    if (found != nullptr && found->single_word) {
      // A single-word token may not be glued to letters or digits on either side.
      if (IsWordChar(CodePointBefore(text, i)) ||
          IsWordChar(CodePointAt(text, i + found->content.size()))) {
        found = nullptr;
      }
    }
    if (found == nullptr) {
      ++i;
      continue;
    }
    size_t start = i, end = i + found->content.size();
    if (found->lstrip) {
      while (start > plain_start && IsUnicodeWhitespace(CodePointBefore(text, start))) {
        const size_t before = start;
        do { --start; } while (start > plain_start && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80);
        if (start == before) break;
      }
    }
    if (found->rstrip) {
      while (end < text.size()) {
        size_t pos = end;
        const char32_t c = DecodeUtf8At(text, &pos);
        if (!IsUnicodeWhitespace(c)) break;
        end = pos;
      }
    }
    emit_plain(start);
    out.push_back({found->content, found->id, at_text_start && start == 0});
    plain_start = end;
    i = end;
  }
  emit_plain(text.size());
  return out;
}

}  // namespace kvcc::tokenizer
