// UTF-8 codec helpers shared by the tokenizers: code-point iteration, encoding, lossy decoding
// with the same replacement rules as Rust's String::from_utf8_lossy (what Hugging Face
// tokenizers apply to decoded bytes), and detection of a sequence cut off at the end.
#pragma once

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace kvcc::tokenizer {

inline constexpr char32_t kReplacementChar = 0xFFFD;

// Length of the well-formed UTF-8 sequence starting at s[pos], or 0 if none starts there
// (Unicode table 3-7: no overlongs, surrogates or code points above U+10FFFF).
size_t Utf8SequenceLength(absl::string_view s, size_t pos);

// Decodes the code point at s[pos] (which must start a well-formed sequence, see
// Utf8SequenceLength) and advances pos.
char32_t DecodeUtf8At(absl::string_view s, size_t* pos);

void AppendUtf8(char32_t cp, std::string* out);
std::string EncodeUtf8(char32_t cp);

bool IsValidUtf8(absl::string_view s);

// Replaces each maximal ill-formed subpart with U+FFFD, as String::from_utf8_lossy does.
std::string Utf8Lossy(absl::string_view s);

// Number of trailing bytes that could still become (part of) one character if more bytes
// followed: a lead byte and fewer continuation bytes than it announces. Deliberately loose
// (it ignores the second-byte range rules) so that a streaming decoder holding these bytes
// back is safe under any decoder's notion of validity.
size_t Utf8IncompleteTailLength(absl::string_view s);

// Splits s into code points; ill-formed bytes become U+FFFD, one per byte.
std::u32string ToCodePoints(absl::string_view s);

}  // namespace kvcc::tokenizer
