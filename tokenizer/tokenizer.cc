#include "tokenizer/tokenizer.h"

#include "absl/strings/str_cat.h"

namespace kvcc::tokenizer {

absl::StatusOr<std::string> Tokenizer::Decode(absl::Span<const int32_t> ids,
                                              bool skip_special_tokens) const {
  const int32_t n = vocab_size();
  for (int32_t id : ids) {
    if (id < 0 || id >= n) {
      return absl::OutOfRangeError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ", n, ")"));
    }
  }
  bool final = false;
  return DecodeSegment(ids, /*at_start=*/true, skip_special_tokens, &final);
}

}  // namespace kvcc::tokenizer
