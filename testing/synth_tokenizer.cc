#include "testing/synth_tokenizer.h"

#include <cstdint>
#include <set>

#include "absl/strings/str_cat.h"
#include "frontend/hf_config.h"
#include "ir/atomic_file.h"
#include "ir/status_macros.h"
#include "nlohmann/json.hpp"

namespace kvcc::testing {
namespace {

// GPT-2's reversible map from bytes to printable code points, spelled as UTF-8.
std::string ByteSymbol(int b) {
  int cp = b;
  if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) {
    int shifted = 0;
    for (int x = 0; x < b; ++x) {
      if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) {
        ++shifted;
      }
    }
    cp = 256 + shifted;
  }
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

}  // namespace

absl::StatusOr<std::string> SynthTokenizerJson(const ir::ModelConfig& config) {
  std::set<int64_t> specials(config.eos_token_ids.begin(), config.eos_token_ids.end());
  if (config.bos_token_id >= 0) specials.insert(config.bos_token_id);
  const int64_t vocab = config.vocab_size;
  if (vocab < static_cast<int64_t>(specials.size()) + 256) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a synthetic tokenizer needs room for ", specials.size(), " special tokens and 256 bytes; ",
        "vocab_size is ", vocab));
  }
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  nlohmann::ordered_json vocab_json = nlohmann::ordered_json::object();
  int next_byte = 0;
  for (int64_t id = 0; id < vocab; ++id) {
    std::string content;
    if (specials.count(id) != 0) {
      content = id == config.bos_token_id ? "<s>"
                : !config.eos_token_ids.empty() && id == config.eos_token_ids.front() ? "</s>"
                                                     : absl::StrCat("<|special_", id, "|>");
      added.push_back({{"id", id}, {"content", content}, {"single_word", false},
                       {"lstrip", false}, {"rstrip", false}, {"normalized", false},
                       {"special", true}});
    } else if (next_byte < 256) {
      content = ByteSymbol(next_byte++);
    } else {
      content = absl::StrCat("\xC4\xA0t", id);  // "Ġt<id>": " t<id>" once decoded
    }
    vocab_json[content] = id;
  }
  nlohmann::ordered_json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false},
                                       {"trim_offsets", true}, {"use_regex", true}};
  nlohmann::ordered_json j = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", byte_level},
      {"post_processor", nullptr},
      {"decoder", byte_level},
      {"model",
       {{"type", "BPE"}, {"byte_fallback", false}, {"vocab", vocab_json},
        {"merges", nlohmann::ordered_json::array()}}}};
  return j.dump();
}

absl::Status WriteSynthTokenizer(const std::string& config_path, const std::string& out_dir) {
  KVCC_ASSIGN_OR_RETURN(const ir::ModelConfig config, frontend::LoadHfConfig(config_path));
  KVCC_ASSIGN_OR_RETURN(const std::string text, SynthTokenizerJson(config));
  return ir::WriteFileAtomically(out_dir + "/tokenizer.json", text);
}

}  // namespace kvcc::testing
