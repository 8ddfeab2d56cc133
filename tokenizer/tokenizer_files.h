// Reading tokenizer files (tokenizer.json, tokenizer.model, tokenizer_config.json) into memory
// with errors that name the file, shared by the tokenizer implementations and the loader.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace kvcc::tokenizer {

// NotFound if the file does not exist, InvalidArgument if it is a directory or unreadable.
absl::StatusOr<std::string> ReadTokenizerFile(const std::string& path);

}  // namespace kvcc::tokenizer
