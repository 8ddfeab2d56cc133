#include "codegen/kernel_templates.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

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

}  // namespace kvcc::codegen
