#include "tokenizer/sentencepiece_library.h"

// Must stay free of Abseil headers: see the header comment.
#include <sentencepiece_processor.h>

#include <exception>
#include <string>

namespace kvcc::tokenizer {

struct SentencePieceLibrary::Impl {
  sentencepiece::SentencePieceProcessor processor;
};

SentencePieceLibrary::SentencePieceLibrary(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SentencePieceLibrary::~SentencePieceLibrary() = default;

std::unique_ptr<SentencePieceLibrary> SentencePieceLibrary::FromSerialized(
    const std::string& bytes, std::string* error) {
  auto impl = std::make_unique<Impl>();
  // The library reports most bad models as a status, but its trie builder throws on some
  // piece spellings (a NUL byte inside a piece): that is a bad file too, never a crash.
  try {
    const auto status = impl->processor.LoadFromSerializedProto(bytes);
    if (!status.ok()) {
      *error = status.ToString();
      return nullptr;
    }
  } catch (const std::exception& e) {
    *error = std::string("the SentencePiece model cannot be built: ") + e.what();
    return nullptr;
  }
  return std::unique_ptr<SentencePieceLibrary>(new SentencePieceLibrary(std::move(impl)));
}

bool SentencePieceLibrary::Encode(const std::string& text, std::vector<int>* ids,
                                  std::string* error) const {
  const auto status = impl_->processor.Encode(text, ids);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

bool SentencePieceLibrary::Decode(const std::vector<int>& ids, std::string* text,
                                  std::string* error) const {
  const auto status = impl_->processor.Decode(ids, text);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

int SentencePieceLibrary::PieceSize() const { return impl_->processor.GetPieceSize(); }
int SentencePieceLibrary::PieceToId(const std::string& piece) const {
  return impl_->processor.PieceToId(piece);
}
std::string SentencePieceLibrary::IdToPiece(int id) const { return impl_->processor.IdToPiece(id); }
bool SentencePieceLibrary::IsControl(int id) const { return impl_->processor.IsControl(id); }
bool SentencePieceLibrary::IsUnknown(int id) const { return impl_->processor.IsUnknown(id); }
bool SentencePieceLibrary::IsByte(int id) const { return impl_->processor.IsByte(id); }
bool SentencePieceLibrary::IsUnused(int id) const { return impl_->processor.IsUnused(id); }
int SentencePieceLibrary::bos_id() const { return impl_->processor.bos_id(); }
int SentencePieceLibrary::eos_id() const { return impl_->processor.eos_id(); }
int SentencePieceLibrary::unk_id() const { return impl_->processor.unk_id(); }

}  // namespace kvcc::tokenizer
