// libFuzzer target for the compiled artifact manifest reader (pipeline::ParseCompiledManifest):
// the input is the text of a kvcc_artifact.json. Any crash or sanitizer report is a finding,
// and so is an accepted manifest listing a path that leaves the artifact, or one that does not
// survive a write/read round trip unchanged.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "pipeline/compiled_manifest.h"

namespace {

void Die(const std::string& what) {
  std::fprintf(stderr, "compiled_manifest_fuzzer: %s\n", what.c_str());
  std::abort();
}

// Relative, and no component is empty, "." or "..".
bool StaysInside(const std::string& path) {
  if (path.empty() || path[0] == '/') return false;
  size_t start = 0;
  while (true) {
    const size_t end = path.find('/', start);
    const std::string part = path.substr(start, end == std::string::npos ? end : end - start);
    if (part.empty() || part == "." || part == "..") return false;
    if (end == std::string::npos) return true;
    start = end + 1;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto m = kvcc::pipeline::ParseCompiledManifest(text, "fuzz.json");
  if (!m.ok()) {
    if (m.status().message().empty()) Die("error without a message");
    return 0;
  }
  for (const auto& [name, d] : m->files) {
    if (!StaysInside(name) || d.bytes < 0) Die("accepted the file entry '" + name + "'");
  }
  auto back = kvcc::pipeline::ParseCompiledManifest(
      kvcc::pipeline::CompiledManifestToJson(*m), "again.json");
  if (!back.ok() || back->files.size() != m->files.size() || back->options != m->options ||
      back->arches != m->arches || back->source != m->source) {
    Die("an accepted manifest does not round-trip");
  }
  for (const auto& [name, d] : m->files) {
    auto it = back->files.find(name);
    if (it == back->files.end() || it->second.bytes != d.bytes || it->second.xxh64 != d.xxh64) {
      Die("an accepted file digest does not round-trip");
    }
  }
  return 0;
}
