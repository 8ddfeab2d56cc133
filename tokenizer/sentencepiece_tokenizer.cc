#include "tokenizer/sentencepiece_tokenizer.h"

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"
#include "tokenizer/tokenizer_files.h"
#include "tokenizer/utf8.h"

namespace kvcc::tokenizer {
namespace {

constexpr const char kSpaceSymbol[] = "\xE2\x96\x81";  // "▁"

std::optional<uint8_t> BytePieceValue(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return std::nullopt;
  unsigned v = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = piece[i];
    v = v * 16 + (c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : 0);
  }
  return static_cast<uint8_t>(v);
}

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer(std::unique_ptr<SentencePieceLibrary> sp,
                                               std::string source)
    : sp_(std::move(sp)), source_(std::move(source)) {}

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::FromFile(
    const std::string& path) {
  KVCC_ASSIGN_OR_RETURN(auto bytes, ReadTokenizerFile(path));
  return FromSerialized(bytes, path);
}

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::FromSerialized(
    const std::string& bytes, const std::string& source) {
  std::string error;
  auto sp = SentencePieceLibrary::FromSerialized(bytes, &error);
  if (sp == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not a valid SentencePiece model (", error, ")"));
  }
  if (sp->PieceSize() <= 0) return absl::InvalidArgumentError(absl::StrCat(source, ": empty SentencePiece vocabulary"));
  auto tok = std::unique_ptr<SentencePieceTokenizer>(new SentencePieceTokenizer(std::move(sp), source));
  const SentencePieceLibrary& lib = *tok->sp_;
  tok->bos_id_ = lib.bos_id();
  tok->eos_id_ = lib.eos_id();
  tok->unk_id_ = lib.unk_id();
  std::vector<AddedToken> specials;
  for (int id = 0; id < lib.PieceSize(); ++id) {
    if (lib.IsControl(id) || lib.IsUnknown(id)) {
      AddedToken t;
      t.content = lib.IdToPiece(id);
      t.id = id;
      t.special = true;
      if (!t.content.empty()) specials.push_back(std::move(t));
    }
  }
  tok->specials_ = AddedTokenMatcher(std::move(specials));
  for (int id = 0; id < lib.PieceSize() && tok->anchor_.empty(); ++id) {
    const std::string piece = lib.IdToPiece(id);
    if (lib.IsControl(id) || lib.IsUnknown(id) || lib.IsByte(id) || lib.IsUnused(id)) continue;
    if (piece.size() <= sizeof(kSpaceSymbol) - 1 || piece.compare(0, 3, kSpaceSymbol) != 0) continue;
    std::string text;
    if (!lib.Decode({id}, &text, &error) || text.empty()) continue;
    tok->anchor_ = {id};
    tok->anchor_text_ = text;
  }
  if (tok->anchor_.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": SentencePiece vocabulary has no normal piece starting with \"\xE2\x96\x81\""));
  }
  return tok;
}

absl::StatusOr<std::vector<int32_t>> SentencePieceTokenizer::Encode(
    absl::string_view text, const EncodeOptions& options) const {
  std::vector<int32_t> ids;
  if (options.add_special_tokens && add_bos_ && bos_id_ >= 0) ids.push_back(bos_id_);
  auto include = [&](const AddedToken&) { return options.parse_special; };
  for (const TextChunk& chunk : specials_.Split(text, true, include)) {
    if (chunk.token_id >= 0) {
      ids.push_back(chunk.token_id);
      continue;
    }
    std::vector<int> piece_ids;
    std::string error;
    if (!sp_->Encode(chunk.text, &piece_ids, &error)) {
      return absl::InvalidArgumentError(absl::StrCat(source_, ": SentencePiece encode failed: ", error));
    }
    ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
  }
  if (options.add_special_tokens && add_eos_ && eos_id_ >= 0) ids.push_back(eos_id_);
  return ids;
}

int32_t SentencePieceTokenizer::vocab_size() const { return sp_->PieceSize(); }

std::optional<int32_t> SentencePieceTokenizer::PieceToId(absl::string_view piece) const {
  const int id = sp_->PieceToId(std::string(piece));
  if (id == sp_->unk_id() && sp_->IdToPiece(id) != piece) return std::nullopt;
  return id;
}

absl::StatusOr<std::string> SentencePieceTokenizer::IdToPiece(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    return absl::OutOfRangeError(absl::StrCat("token id ", id, " is outside the vocabulary [0, ",
                                              vocab_size(), ") of ", source_));
  }
  return sp_->IdToPiece(id);
}

bool SentencePieceTokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && sp_->IsControl(id);
}

std::string SentencePieceTokenizer::DecodeSegment(absl::Span<const int32_t> ids, bool at_start,
                                                  bool skip_special_tokens, bool* final) const {
  std::vector<int> input;
  if (!at_start) input = anchor_;
  for (int32_t id : ids) {
    if (skip_special_tokens && IsSpecial(id)) continue;
    input.push_back(id);
  }
  std::string text, error;
  // Ids were range-checked by the caller, the only way SentencePiece's Decode fails.
  if (!sp_->Decode(input, &text, &error)) text.clear();
  if (!at_start) text = text.substr(std::min(text.size(), anchor_text_.size()));

  *final = true;
  if (at_start && text.empty()) *final = false;  // the leading-space rule is still pending
  // A trailing run of byte pieces may still be completing a character.
  std::string run;
  for (size_t i = ids.size(); i > 0 && sp_->IsByte(ids[i - 1]); --i) {
    if (auto b = BytePieceValue(sp_->IdToPiece(ids[i - 1]))) run.insert(run.begin(), static_cast<char>(*b));
  }
  if (Utf8IncompleteTailLength(run) > 0) *final = false;
  return text;
}

}  // namespace kvcc::tokenizer
