// Test helper: runs tests/python/tokenizer_oracle.py (Hugging Face `tokenizers` and the
// `sentencepiece` library) under $KVCC_PYTHON and returns its JSON answer. Shared by the
// tokenizer tests; see that script for the request/answer layout.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace kvcc::testing {

inline const char* OraclePython() {
  const char* py = std::getenv("KVCC_PYTHON");
  return (py != nullptr && *py != '\0') ? py : nullptr;
}

// Runs the oracle on `request`, writing files under `dir`. Fails (never skips) when the
// script fails: callers skip only when KVCC_PYTHON is unset.
inline absl::StatusOr<nlohmann::json> RunTokenizerOracle(const nlohmann::json& request,
                                                         const std::string& dir) {
  const std::string req = dir + "/oracle_request.json", res = dir + "/oracle_result.json";
  {
    std::ofstream out(req);
    out << request.dump();
  }
  const std::string cmd = absl::StrCat("'", OraclePython(), "' '",
                                       SourcePath("tests/python/tokenizer_oracle.py"), "' '", req,
                                       "' '", res, "' 2>", dir, "/oracle_stderr.txt");
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream err(dir + "/oracle_stderr.txt");
    std::stringstream msg;
    msg << err.rdbuf();
    return absl::InternalError(absl::StrCat("tokenizer oracle failed: ", cmd, "\n", msg.str()));
  }
  std::ifstream in(res);
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InternalError("tokenizer oracle wrote malformed JSON");
  return j;
}

// Text exercising what tokenizers get wrong: unicode of several scripts, accents (composed
// and combining), emoji incl. ZWJ sequences, code, runs of spaces/tabs/newlines, contractions,
// digits, special tokens written inline, and the empty string.
inline std::vector<std::string> TokenizerCorpus() {
  return {
      "",
      "Hello world",
      "Once upon a time, there was a little girl named Lily.",
      " ",
      "   ",
      "  leading spaces",
      "trailing spaces   ",
      "multiple   spaces  between    words",
      "tabs\tand\t\ttabs\t",
      "new\nlines\n\n\nmany\n",
      "\r\nwindows line\r\nendings\r\n",
      " \n \t\n  mixed whitespace \u00a0nbsp\u3000ideographic\u2003em",
      "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 fa\u00e7ade \u00c5ngstr\u00f6m Z\u00fcrich S\u00e3o Paulo",
      "combining e\u0301 a\u0308 n\u0303",
      "canonical forms \u212b \u1100\u1161\u11a8 A\u030a\u0301 \u1e0b\u0323 q\u0307\u0323 \u00c5\u0327 \uac00\u11a8",
      "\u4e2d\u6587\u5206\u8bcd\u6d4b\u8bd5\uff0c\u8fd9\u662f\u4e00\u4e2a\u53e5\u5b50\u3002",
      "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3067\u3059 \ud55c\uad6d\uc5b4 \u0440\u0443\u0441\u0441\u043a\u0438\u0439 \u03b5\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u0627\u0644\u0639\u0631\u0628\u064a\u0629",
      "emoji \U0001F642\U0001F680 thumbs \U0001F44D\U0001F3FD family \U0001F468\u200D\U0001F469\u200D\U0001F467 flag \U0001F1EB\U0001F1F7",
      "def square(x):\n    return x ** 2  # comment\n\n\tif (a != b) { y = {'k': [1, 2, 3]}; }\n",
      "numbers 1234567 3.14159 1,000,000 \u0663\u0664 \u00bd \u2167 2024-01-01",
      "I'm you're he'll we've they'd it's IT'S We'Re don't",
      "symbols \u00b1\u00d7\u00f7 \u2192 \u2190 \u2264 \u2265 \u2211 \u222b \u20ac100 \u00a320 \u00a53000 @#$%^&*()_+-=[]{}|;:',.<>/?`~",
      "special <s> inline </s> and <unk> tokens<s></s>",
      "<s>",
      " </s> ",
      "<|endoftext|>text<|endoftext|> <|endoftext|>",
      "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n",
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>",
      "<|user|> say hello world and hello worldly",
      "literal byte token <0x41> and \u2581 meta space \u2581\u2581 here",
      "control \x01\x02\x7f chars and zero\u200bwidth",
      "supercalifragilisticexpialidocious antidisestablishmentarianism",
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
      "\U00010348 gothic \U0001D11E music \U00020000 cjk-ext-b",
  };
}

// Random id sequences (seeded) over [0, vocab), lengths 1..max_len.
inline std::vector<std::vector<int32_t>> RandomIdLists(int32_t vocab, int count, int max_len,
                                                       uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> id(0, vocab - 1);
  std::uniform_int_distribution<int> len(1, max_len);
  std::vector<std::vector<int32_t>> out;
  for (int i = 0; i < count; ++i) {
    std::vector<int32_t> ids(len(rng));
    for (int32_t& x : ids) x = id(rng);
    out.push_back(std::move(ids));
  }
  return out;
}

// The ids of the byte-fallback pieces <0x00>..<0xFF> the tokenizer has, in byte order (none
// for byte-level BPE): runs of them are where decoders differ.
inline std::vector<int32_t> ByteFallbackIds(const tokenizer::Tokenizer& tok) {
  std::vector<int32_t> ids;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    if (auto id = tok.PieceToId(name)) ids.push_back(*id);
  }
  return ids;
}

}  // namespace kvcc::testing
