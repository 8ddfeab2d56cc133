#include "tokenizer/stream_decoder.h"

#include "absl/strings/str_cat.h"

namespace kvcc::tokenizer {

absl::StatusOr<std::string> StreamDecoder::Put(int32_t id) {
  if (id < 0 || id >= tokenizer_->vocab_size()) {
    return absl::OutOfRangeError(absl::StrCat("token id ", id, " is outside the vocabulary [0, ",
                                              tokenizer_->vocab_size(), ")"));
  }
  pending_.push_back(id);
  bool final = false;
  std::string text = tokenizer_->DecodeSegment(pending_, at_start_, skip_special_, &final);
  if (!final) return std::string();
  pending_.clear();
  at_start_ = false;
  return text;
}

std::string StreamDecoder::Finish() {
  std::string text;
  if (!pending_.empty()) {
    bool final = false;
    text = tokenizer_->DecodeSegment(pending_, at_start_, skip_special_, &final);
    pending_.clear();
  }
  at_start_ = true;
  return text;
}

void StreamDecoder::Reset() {
  pending_.clear();
  at_start_ = true;
}

}  // namespace kvcc::tokenizer
