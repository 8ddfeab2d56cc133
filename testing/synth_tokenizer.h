// A byte-level BPE tokenizer.json covering every id of a synthetic checkpoint's vocabulary, so
// that tools which need a tokenizer (kvcc serve, chat) run on `kvcc synth` models: the config's
// BOS/EOS ids are special tokens, 256 ids hold the bytes (any text encodes), and every other id
// is an ordinary token that decodes to " t<id>" (random weights emit them).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ir/model_config.h"

namespace kvcc::testing {

// The tokenizer.json text; an error when the vocabulary cannot hold the specials and the bytes.
absl::StatusOr<std::string> SynthTokenizerJson(const ir::ModelConfig& config);

// Writes tokenizer.json for the checkpoint config `config_path` into `out_dir`.
absl::Status WriteSynthTokenizer(const std::string& config_path, const std::string& out_dir);

}  // namespace kvcc::testing
