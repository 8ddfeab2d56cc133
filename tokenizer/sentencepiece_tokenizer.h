// SentencePiece tokenizer.model files through Debian's libsentencepiece (via
// sentencepiece_library.h), behaving like Hugging Face's slow LlamaTokenizer: control pieces
// written in the text ("<s>", "</s>", "<unk>") become their ids, each text span between them is
// encoded by SentencePiece, and BOS/EOS are added per the tokenizer_config flags.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenizer/added_token_matcher.h"
#include "tokenizer/sentencepiece_library.h"
#include "tokenizer/tokenizer.h"

namespace kvcc::tokenizer {

class SentencePieceTokenizer : public Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> FromFile(const std::string& path);
  // `source` names the input in error messages.
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> FromSerialized(
      const std::string& bytes, const std::string& source);

  void set_add_bos(bool v) { add_bos_ = v; }
  void set_add_eos(bool v) { add_eos_ = v; }

  using Tokenizer::Encode;
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                              const EncodeOptions& options) const override;
  int32_t vocab_size() const override;
  std::optional<int32_t> PieceToId(absl::string_view piece) const override;
  absl::StatusOr<std::string> IdToPiece(int32_t id) const override;
  bool IsSpecial(int32_t id) const override;
  std::string DecodeSegment(absl::Span<const int32_t> ids, bool at_start,
                            bool skip_special_tokens, bool* final) const override;

 private:
  SentencePieceTokenizer(std::unique_ptr<SentencePieceLibrary> sp, std::string source);

  std::unique_ptr<SentencePieceLibrary> sp_;
  std::string source_;
  bool add_bos_ = true;
  bool add_eos_ = false;
  AddedTokenMatcher specials_;  // control and unknown pieces, matched in the text
  // A piece starting with "▁" decoded in front of a continuation: it consumes the start-of-text
  // space rule, so the rest decodes as it would in the middle of a text.
  std::vector<int> anchor_;
  std::string anchor_text_;
};

}  // namespace kvcc::tokenizer
