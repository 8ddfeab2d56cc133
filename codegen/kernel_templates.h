// The kernel template files (codegen/*.cuh), embedded into the library at build time by
// embed_kernels.cmake, looked up by file name.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvcc::codegen {

struct EmbeddedTemplate {
  const char* name;  // file name, e.g. "decode_attention.cuh"
  std::string text;
};

// Defined in the generated embedded_kernels.cc.
const std::vector<EmbeddedTemplate>& EmbeddedTemplates();

// The text of template `name`, or NotFound naming the templates that exist.
absl::StatusOr<absl::string_view> KernelTemplate(absl::string_view name);

}  // namespace kvcc::codegen
