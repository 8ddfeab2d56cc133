// libFuzzer target for tokenizer.json loading (tokenizer::HfTokenizer::FromJson: the bounded
// JSON reader, component parsing, RE2 pattern compilation). Input: the file's bytes. Any crash,
// sanitizer report or timeout is a finding, and so is an error without the file named, or a
// loaded tokenizer that encodes a fixed text to ids outside its vocabulary or cannot decode them.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tokenizer/hf_tokenizer.h"

namespace {

void Die(const std::string& what) {
  std::fprintf(stderr, "tokenizer_json_fuzzer: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto tok = kvcc::tokenizer::HfTokenizer::FromJson(text, "fuzz/tokenizer.json");
  if (!tok.ok()) {
    if (tok.status().message().find("fuzz/tokenizer.json") == std::string::npos) {
      Die("error without the file named: " + std::string(tok.status().message()));
    }
    return 0;
  }
  // Spaces and repeats reach regex normalizers and splits; <s> and bytes reach added tokens
  // and byte fallback.
  for (const std::string input : {std::string("Hello  world,\tI'm 12345 <s> caf\xC3\xA9 \xF0\x9F\x99\x82\n"),
                                  std::string(64, 'a') + "b" + std::string(64, ' ') + "\xFF", std::string()}) {
    auto ids = (*tok)->Encode(input);
    if (!ids.ok()) Die("Encode failed: " + std::string(ids.status().message()));
    for (int32_t id : *ids) {
      if (id < 0 || id >= (*tok)->vocab_size()) Die("encoded id outside the vocabulary");
    }
    if (!(*tok)->Decode(*ids).ok()) Die("cannot decode its own ids");
  }
  return 0;
}
