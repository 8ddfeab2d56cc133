// Finds added / special tokens ("<s>", "<|im_start|>") in text before the tokenizer model
// runs, the way Hugging Face's AddedVocabulary does: leftmost-longest matches, with the
// lstrip / rstrip / single_word flags widening or vetoing a match.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/strings/string_view.h"

namespace kvcc::tokenizer {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

// A piece of the input: either plain text for the model, or one matched token.
struct TextChunk {
  std::string text;
  int32_t token_id = -1;       // >= 0 when this chunk is an added token
  bool at_text_start = false;  // begins at offset 0 of the original text
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);

  // Splits `text` at matches of the tokens for which include(token) is true. Empty plain
  // chunks are dropped (an empty text gives no chunks).
  std::vector<TextChunk> Split(absl::string_view text, bool at_text_start,
                               const std::function<bool(const AddedToken&)>& include) const;

  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  std::vector<AddedToken> tokens_;
  // First byte -> indices into tokens_, longest content first.
  std::unordered_map<unsigned char, std::vector<size_t>> by_first_byte_;
};

}  // namespace kvcc::tokenizer
