// Unicode canonical normalization (NFC, NFD) for the tokenizer.json normalizers of that name
// (Qwen2's tokenizer.json applies NFC), from tables generated out of the Unicode data.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace kvcc::tokenizer {

// Canonical decomposition, canonically ordered. Ill-formed bytes become U+FFFD.
std::string ToNfd(absl::string_view utf8);
// Canonical decomposition followed by canonical composition.
std::string ToNfc(absl::string_view utf8);

}  // namespace kvcc::tokenizer
