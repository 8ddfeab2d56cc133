// Incremental detokenization for generation: fed one id at a time, emits only text that no
// later token can change (complete UTF-8, finished byte-fallback runs, the start-of-text space
// rule settled), so the concatenated output equals Tokenizer::Decode of all ids.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenizer/tokenizer.h"

namespace kvcc::tokenizer {

class StreamDecoder {
 public:
  // `tokenizer` must outlive the decoder.
  explicit StreamDecoder(const Tokenizer* tokenizer, bool skip_special_tokens = false)
      : tokenizer_(tokenizer), skip_special_(skip_special_tokens) {}

  // Text that became final with this id (often empty while a character is incomplete).
  absl::StatusOr<std::string> Put(int32_t id);
  // Everything still held back (end of generation); incomplete bytes become U+FFFD as in Decode.
  std::string Finish();
  // Starts a new text (the start-of-text rules apply again).
  void Reset();

  size_t pending_tokens() const { return pending_.size(); }

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  bool at_start_ = true;
  // Ids since the last point where decoding became final; decoding restarts there, so the
  // work per token stays bounded by the length of one unfinished character or byte run.
  std::vector<int32_t> pending_;
};

}  // namespace kvcc::tokenizer
