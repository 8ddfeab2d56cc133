// The kernel template files (codegen/*.cuh) and the parameter headers they share with the host
// (codegen/*_params.h), embedded into the library at build time by embed_kernels.cmake, looked
// up by file name; NVRTC gets them all as the headers a program may include.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvcc::codegen {

struct EmbeddedTemplate {
  const char* name;  // file name as a template includes it, e.g. "kvcc_common.cuh"
  std::string text;
};

// Defined in the generated embedded_kernels.cc.
const std::vector<EmbeddedTemplate>& EmbeddedTemplates();

// The text of template `name`, or NotFound naming the templates that exist.
absl::StatusOr<absl::string_view> KernelTemplate(absl::string_view name);

// sha256 (hex) over every embedded file's name and text. A program's source is only #defines
// and #includes, so its cache key needs this to change whenever an included file does.
const std::string& EmbeddedTemplatesDigest();

}  // namespace kvcc::codegen
