// The tokenizer interface the runtime and tools use: text <-> token ids for SentencePiece
// (tokenizer.model) and Hugging Face (tokenizer.json) tokenizers, plus the hooks the streaming
// decoder needs to emit text token by token exactly as a full Decode would.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace kvcc::tokenizer {

struct EncodeOptions {
  // Add what the tokenizer adds around a sequence (BOS, and EOS where configured).
  bool add_special_tokens = true;
  // Recognise special tokens written in the text ("<s>", "<|im_start|>") as single ids. Off,
  // such text is tokenized like any other (what one wants for untrusted user input).
  bool parse_special = true;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  virtual absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                                      const EncodeOptions& options) const = 0;
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const {
    return Encode(text, EncodeOptions());
  }

  // Text of `ids`; out-of-range ids are an error.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     bool skip_special_tokens = false) const;

  virtual int32_t vocab_size() const = 0;
  virtual std::optional<int32_t> PieceToId(absl::string_view piece) const = 0;
  // The vocabulary entry for id (e.g. "▁the", "Ġthe", "<0x0A>"); error if out of range.
  virtual absl::StatusOr<std::string> IdToPiece(int32_t id) const = 0;
  // Control / special tokens (BOS, EOS, chat markers) that skip_special_tokens drops.
  virtual bool IsSpecial(int32_t id) const = 0;

  // -1 where the tokenizer has none.
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  int32_t unk_id() const { return unk_id_; }
  // Set by the loader from tokenizer_config.json / the model's generation settings.
  void set_bos_id(int32_t id) { bos_id_ = id; }
  void set_eos_id(int32_t id) { eos_id_ = id; }

  // Streaming hook. Decodes `ids` as the start of a text (`at_start`, where leading-space rules
  // apply) or as a continuation, and sets *final when no later ids can change this text, i.e.
  // Decode(ids ++ rest) == DecodeSegment(ids, at_start) ++ DecodeSegment(rest, false) for every
  // rest. Ids are already range-checked by the caller.
  virtual std::string DecodeSegment(absl::Span<const int32_t> ids, bool at_start,
                                    bool skip_special_tokens, bool* final) const = 0;

 protected:
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  int32_t unk_id_ = -1;
};

}  // namespace kvcc::tokenizer
