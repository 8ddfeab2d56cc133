// A thin bridge to Debian's libsentencepiece. Its header declares `namespace absl { using
// std::string_view; }`, which clashes with Debian's Abseil (built without std::string_view), so
// the library is only ever included by sentencepiece_library.cc and this interface uses std
// types alone; errors come back as message strings for the caller to wrap in absl::Status.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace kvcc::tokenizer {

class SentencePieceLibrary {
 public:
  ~SentencePieceLibrary();

  // Loads a serialized ModelProto (the bytes of tokenizer.model). Null and *error set on failure.
  static std::unique_ptr<SentencePieceLibrary> FromSerialized(const std::string& bytes,
                                                              std::string* error);

  bool Encode(const std::string& text, std::vector<int>* ids, std::string* error) const;
  bool Decode(const std::vector<int>& ids, std::string* text, std::string* error) const;

  int PieceSize() const;
  int PieceToId(const std::string& piece) const;  // unk id when absent
  std::string IdToPiece(int id) const;
  bool IsControl(int id) const;
  bool IsUnknown(int id) const;
  bool IsByte(int id) const;
  bool IsUnused(int id) const;
  int bos_id() const;
  int eos_id() const;
  int unk_id() const;

 private:
  struct Impl;
  explicit SentencePieceLibrary(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvcc::tokenizer
