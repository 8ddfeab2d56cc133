// The pre-tokenizer regexes of byte-level BPE tokenizers (GPT-2, Llama-3, Qwen2), matched by
// hand over code points: std::regex lacks \p{L}/\p{N}, and a fixed matcher per published
// pattern is exact and fast. Patterns are recognised by their literal text in tokenizer.json.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace kvcc::tokenizer {

enum class PretokenizerPattern {
  kGpt2,    // GPT-2 / RoBERTa / SmolLM (ByteLevel use_regex)
  kLlama3,  // Llama-3: case-insensitive contractions, numbers in groups of up to 3
  kQwen2,   // Qwen2: as Llama-3 but single digits
};

// The pattern whose regex source is exactly `regex`, if it is one of the above.
std::optional<PretokenizerPattern> RecognizePretokenizerPattern(absl::string_view regex);

// The regex source text of a pattern (as written in tokenizer.json).
const char* PretokenizerPatternSource(PretokenizerPattern pattern);

// All non-overlapping leftmost matches, as [begin, end) code-point index spans, in the order a
// regex find_iter would return them. For these patterns the matches tile the whole text.
std::vector<std::pair<size_t, size_t>> FindPretokenMatches(PretokenizerPattern pattern,
                                                           const std::u32string& text);

}  // namespace kvcc::tokenizer
