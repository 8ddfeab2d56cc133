// A regex from a tokenizer file (Split pre-tokenizer, Replace normalizer) run by RE2, which
// matches in linear time without recursion: no input can make a pattern hang or overflow the
// stack. Hugging Face runs these with Oniguruma; patterns whose meaning RE2 cannot reproduce
// (lookarounds, backreferences, ASCII-only \b) are refused when the tokenizer is loaded.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace re2 {
class RE2;
}

namespace kvcc::tokenizer {

class TokenizerRegex {
 public:
  ~TokenizerRegex();

  // `source` (the tokenizer file) and `role` ("Split pre-tokenizer") name the pattern in errors.
  static absl::StatusOr<std::unique_ptr<TokenizerRegex>> Compile(absl::string_view pattern,
                                                                 absl::string_view source,
                                                                 absl::string_view role);

  // Non-overlapping leftmost matches as byte spans [begin, end), in the order Oniguruma's
  // find_iter returns them (an empty match right after the previous match is skipped).
  std::vector<std::pair<size_t, size_t>> FindAll(absl::string_view text) const;

  const std::string& pattern() const { return pattern_; }

 private:
  TokenizerRegex(std::string pattern, std::unique_ptr<re2::RE2> re);
  std::string pattern_;
  std::unique_ptr<re2::RE2> re_;
};

// The pattern rewritten in RE2 syntax with Oniguruma's Unicode meaning of \s \d \w (RE2's are
// ASCII-only), or an error naming the construct RE2 would read differently. Exposed for tests.
absl::StatusOr<std::string> OnigurumaToRe2(absl::string_view pattern);

}  // namespace kvcc::tokenizer
