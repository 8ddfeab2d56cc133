#include "codegen/kernel_templates.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "codegen/sha256.h"

namespace kvcc::codegen {

absl::StatusOr<absl::string_view> KernelTemplate(absl::string_view name) {
  std::string known;
  for (const EmbeddedTemplate& t : EmbeddedTemplates()) {
    if (name == t.name) return absl::string_view(t.text);
    absl::StrAppend(&known, known.empty() ? "" : ", ", t.name);
  }
  return absl::NotFoundError(
      absl::StrCat("kernel template '", name, "' is not embedded (have: ", known, ")"));
}

const std::string& EmbeddedTemplatesDigest() {
  static const std::string* digest = [] {
    Sha256 h;
    for (const EmbeddedTemplate& t : EmbeddedTemplates()) {
      // Length prefixes keep different (name, text) lists from hashing the same bytes.
      for (absl::string_view field : {absl::string_view(t.name), absl::string_view(t.text)}) {
        const uint64_t n = field.size();
        h.Update(&n, sizeof(n));
        h.Update(field);
      }
    }
    return new std::string(DigestHex(h.Final()));
  }();
  return *digest;
}

}  // namespace kvcc::codegen
