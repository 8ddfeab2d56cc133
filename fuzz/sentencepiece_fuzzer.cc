// libFuzzer target for SentencePiece model loading (tokenizer::SentencePieceTokenizer::
// FromSerialized over libsentencepiece). Input: tokenizer.model bytes. Any crash, sanitizer
// report or timeout is a finding, and so is an error without the file named, or a loaded model
// that encodes a fixed text to ids outside its vocabulary or cannot decode them.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tokenizer/sentencepiece_tokenizer.h"

namespace {

void Die(const std::string& what) {
  std::fprintf(stderr, "sentencepiece_fuzzer: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  auto tok = kvcc::tokenizer::SentencePieceTokenizer::FromSerialized(bytes, "fuzz/tokenizer.model");
  if (!tok.ok()) {
    if (tok.status().message().find("fuzz/tokenizer.model") == std::string::npos) {
      Die("error without the file named: " + std::string(tok.status().message()));
    }
    return 0;
  }
  for (const std::string input : {std::string("Hello  world, 12345 <s> caf\xC3\xA9 \xF0\x9F\x99\x82\n"),
                                  std::string(64, ' ') + "\xFF", std::string()}) {
    auto ids = (*tok)->Encode(input);
    if (!ids.ok()) return 0;  // an encode error is a clean refusal too
    for (int32_t id : *ids) {
      if (id < 0 || id >= (*tok)->vocab_size()) Die("encoded id outside the vocabulary");
    }
    if (!(*tok)->Decode(*ids).ok()) Die("cannot decode its own ids");
  }
  return 0;
}
