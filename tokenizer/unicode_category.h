// Unicode character classes the Hugging Face pre-tokenizer regexes use (\p{L}, \p{N}, \s),
// from compact range tables, since std::regex has no Unicode property classes.
#pragma once

namespace kvcc::tokenizer {

bool IsUnicodeLetter(char32_t c);      // general category L*
bool IsUnicodeNumber(char32_t c);      // general category N*
bool IsUnicodeWhitespace(char32_t c);  // White_Space property (regex \s, Rust char::is_whitespace)

}  // namespace kvcc::tokenizer
