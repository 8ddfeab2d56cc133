#include "tokenizer/tokenizer_files.h"

#include "ir/file_read.h"

namespace kvcc::tokenizer {

absl::StatusOr<std::string> ReadTokenizerFile(const std::string& path) {
  return ir::ReadRegularFile(path, kMaxTokenizerFileBytes, "tokenizer file");
}

}  // namespace kvcc::tokenizer
