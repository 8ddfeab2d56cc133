// libFuzzer target for the artifact manifest reader (ir::ParseManifest): the input is the text
// of a model.manifest.json. Any crash or sanitizer report is a finding, and so is an accepted
// manifest that does not survive a write/read round trip unchanged.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "ir/artifact_manifest.h"

namespace {

void Die(const std::string& what) {
  std::fprintf(stderr, "artifact_manifest_fuzzer: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto m = kvcc::ir::ParseManifest(text, "fuzz.json");
  if (!m.ok()) {
    if (m.status().message().empty()) Die("error without a message");
    return 0;
  }
  if (m->onnx_bytes < 0) Die("accepted a negative size");
  auto back = kvcc::ir::ParseManifest(kvcc::ir::ManifestToJson(*m), "again.json");
  if (!back.ok() || back->onnx_bytes != m->onnx_bytes || back->onnx_xxh64 != m->onnx_xxh64) {
    Die("an accepted manifest does not round-trip");
  }
  return 0;
}
