// libFuzzer target for the kernel manifest reader (codegen::ParseKernelManifest): the input is
// the text of a compiled artifact's kernels/manifest.json. Any crash or sanitizer report is a
// finding, and so is an accepted manifest with a file name that leaves kernels/ or one that
// does not survive a write/read round trip unchanged.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "codegen/kernel_store_manifest.h"

namespace {

void Die(const std::string& what) {
  std::fprintf(stderr, "kernel_manifest_fuzzer: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto m = kvcc::codegen::ParseKernelManifest(text, "fuzz.json");
  if (!m.ok()) {
    if (m.status().message().empty()) Die("error without a message");
    return 0;
  }
  for (const auto& k : m->kernels) {
    for (const std::string& f : {k.cubin_file, k.log_file}) {
      if (f.empty() || f.find('/') != std::string::npos || f == "..") Die("accepted " + f);
    }
  }
  auto back = kvcc::codegen::ParseKernelManifest(kvcc::codegen::KernelManifestToJson(*m), "again");
  if (!back.ok() || back->kernels.size() != m->kernels.size() ||
      back->nvrtc_version != m->nvrtc_version) {
    Die("an accepted manifest does not round-trip");
  }
  for (size_t i = 0; i < m->kernels.size(); ++i) {
    const auto &a = m->kernels[i], &b = back->kernels[i];
    if (a.key != b.key || a.spec != b.spec || a.cubin_file != b.cubin_file ||
        a.cubin_sha256 != b.cubin_sha256 || a.log_sha256 != b.log_sha256 ||
        a.registers != b.registers || a.spill_store_bytes != b.spill_store_bytes ||
        a.spill_load_bytes != b.spill_load_bytes) {
      Die("an accepted kernel entry does not round-trip");
    }
  }
  return 0;
}
