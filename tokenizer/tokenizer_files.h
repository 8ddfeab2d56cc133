// Reading tokenizer files (tokenizer.json, tokenizer.model, tokenizer_config.json) into memory
// with errors that name the file, shared by the tokenizer implementations and the loader.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace kvcc::tokenizer {

// The largest tokenizer file read (the largest published tokenizer.json is ~35 MB).
inline constexpr int64_t kMaxTokenizerFileBytes = int64_t{256} << 20;

// Through ir::ReadRegularFile: NotFound if the file does not exist, InvalidArgument if it is a
// directory, FIFO or device (never blocking on one) or larger than kMaxTokenizerFileBytes.
absl::StatusOr<std::string> ReadTokenizerFile(const std::string& path);

}  // namespace kvcc::tokenizer
