#include "tokenizer/utf8.h"

namespace kvcc::tokenizer {
namespace {

inline unsigned char At(absl::string_view s, size_t i) { return static_cast<unsigned char>(s[i]); }

// Allowed range of the second byte for a lead byte (table 3-7); later bytes are 80..BF.
bool SecondByteOk(unsigned char lead, unsigned char b) {
  switch (lead) {
    case 0xE0: return b >= 0xA0 && b <= 0xBF;
    case 0xED: return b >= 0x80 && b <= 0x9F;
    case 0xF0: return b >= 0x90 && b <= 0xBF;
    case 0xF4: return b >= 0x80 && b <= 0x8F;
    default: return b >= 0x80 && b <= 0xBF;
  }
}

// Expected total length for a lead byte, 0 if it cannot start a sequence.
int LeadLength(unsigned char c) {
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return 2;
  if (c >= 0xE0 && c <= 0xEF) return 3;
  if (c >= 0xF0 && c <= 0xF4) return 4;
  return 0;
}

// Length of the maximal subpart at pos (>= 1) when no well-formed sequence starts there.
size_t MaximalSubpart(absl::string_view s, size_t pos) {
  const unsigned char lead = At(s, pos);
  const int need = LeadLength(lead);
  if (need <= 1) return 1;
  size_t n = 1;
  for (int k = 1; k < need && pos + n < s.size(); ++k) {
    const unsigned char b = At(s, pos + n);
    const bool ok = (k == 1) ? SecondByteOk(lead, b) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
    ++n;
  }
  return n;
}

}  // namespace

size_t Utf8SequenceLength(absl::string_view s, size_t pos) {
  if (pos >= s.size()) return 0;
  const unsigned char lead = At(s, pos);
  const int need = LeadLength(lead);
  if (need == 0) return 0;
  if (pos + need > s.size()) return 0;
  for (int k = 1; k < need; ++k) {
    const unsigned char b = At(s, pos + k);
    const bool ok = (k == 1) ? SecondByteOk(lead, b) : (b >= 0x80 && b <= 0xBF);
    if (!ok) return 0;
  }
  return need;
}

char32_t DecodeUtf8At(absl::string_view s, size_t* pos) {
  const size_t n = Utf8SequenceLength(s, *pos);
  if (n == 0) {
    ++*pos;
    return kReplacementChar;
  }
  const unsigned char lead = At(s, *pos);
  char32_t cp = n == 1 ? lead : n == 2 ? (lead & 0x1F) : n == 3 ? (lead & 0x0F) : (lead & 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (At(s, *pos + k) & 0x3F);
  *pos += n;
  return cp;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string EncodeUtf8(char32_t cp) {
  std::string s;
  AppendUtf8(cp, &s);
  return s;
}

bool IsValidUtf8(absl::string_view s) {
  for (size_t pos = 0; pos < s.size();) {
    const size_t n = Utf8SequenceLength(s, pos);
    if (n == 0) return false;
    pos += n;
  }
  return true;
}

std::string Utf8Lossy(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) {
    const size_t n = Utf8SequenceLength(s, pos);
    if (n > 0) {
      out.append(s.data() + pos, n);
      pos += n;
    } else {
      AppendUtf8(kReplacementChar, &out);
      pos += MaximalSubpart(s, pos);
    }
  }
  return out;
}

size_t Utf8IncompleteTailLength(absl::string_view s) {
  // Walk back over at most three continuation bytes to the nearest lead byte.
  size_t conts = 0;
  while (conts < 3 && conts < s.size()) {
    const unsigned char b = At(s, s.size() - 1 - conts);
    if (b < 0x80 || b > 0xBF) break;
    ++conts;
  }
  if (conts == s.size()) return 0;
  const unsigned char lead = At(s, s.size() - 1 - conts);
  int need = 0;
  if (lead >= 0xC0 && lead <= 0xDF) need = 2;
  else if (lead >= 0xE0 && lead <= 0xEF) need = 3;
  else if (lead >= 0xF0 && lead <= 0xF7) need = 4;
  if (need == 0) return 0;
  return static_cast<int>(conts) + 1 < need ? conts + 1 : 0;
}

std::u32string ToCodePoints(absl::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) out.push_back(DecodeUtf8At(s, &pos));
  return out;
}

}  // namespace kvcc::tokenizer
