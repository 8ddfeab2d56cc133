// Hugging Face tokenizer.json, implemented here (no Rust tokenizers library): byte-level BPE
// (GPT-2, SmolLM, Llama-3, Qwen2 pre-tokenizers) and SentencePiece-style BPE with byte
// fallback (Llama-2, stories260K), with added/special tokens split out before the model and
// the TemplateProcessing post-processor. Components it does not implement are rejected at load
// time with the component type and the file named.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tokenizer/tokenizer.h"

namespace kvcc::tokenizer {

class HfTokenizer : public Tokenizer {
 public:
  ~HfTokenizer() override;

  static absl::StatusOr<std::unique_ptr<HfTokenizer>> FromFile(const std::string& path);
  // `source` names the input in error messages.
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> FromJson(absl::string_view json,
                                                               const std::string& source);

  using Tokenizer::Encode;
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                              const EncodeOptions& options) const override;
  int32_t vocab_size() const override;
  std::optional<int32_t> PieceToId(absl::string_view piece) const override;
  absl::StatusOr<std::string> IdToPiece(int32_t id) const override;
  bool IsSpecial(int32_t id) const override;
  std::string DecodeSegment(absl::Span<const int32_t> ids, bool at_start,
                            bool skip_special_tokens, bool* final) const override;

  // Rebuilds what Encode adds around a sequence from tokenizer_config.json's add_bos_token /
  // add_eos_token (unset: keep the post-processor's), using bos_id() / eos_id().
  absl::Status SetSpecialAffixes(std::optional<bool> add_bos, std::optional<bool> add_eos);

  // Ids the post-processor puts before / after a single sequence (e.g. BOS).
  const std::vector<int32_t>& prefix_ids() const;
  const std::vector<int32_t>& suffix_ids() const;

 private:
  struct Impl;
  explicit HfTokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvcc::tokenizer
