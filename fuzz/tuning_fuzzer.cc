// libFuzzer target for the tuning reader (runtime::ParseTuning): the input is the text of a
// compiled artifact's tuning.json. Any crash or sanitizer report is a finding, and so is an
// accepted file with a value out of range, a repeated kernel or GEMM shape, or one that does
// not survive a write/read round trip unchanged.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>

#include "runtime/cuda/kernel_tuning.h"

namespace {

void Die(const std::string& what) {
  std::fprintf(stderr, "tuning_fuzzer: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto t = kvcc::runtime::ParseTuning(text, "fuzz.json");
  if (!t.ok()) {
    if (t.status().message().empty()) Die("error without a message");
    return 0;
  }
  std::set<std::string> kernels;
  for (const auto& d : t->decode) {
    if (!kernels.insert(d.kernel).second) Die("accepted a repeated kernel");
    if (d.vec_bytes < 0 || d.vec_bytes > 16 || d.unroll < 0 || d.unroll > 8 || d.threads < 0) {
      Die("accepted a tile out of range");
    }
    for (const auto& b : d.buckets) {
      if (b.bucket.splits < 1 || b.bucket.max_batch < 1 || b.bucket.max_context < 1 || b.us < 0) {
        Die("accepted a bucket out of range");
      }
    }
  }
  for (const auto& g : t->gemm) {
    if (g.m < 1 || g.n < 1 || g.k < 1 || g.us < 0 || g.heuristic_us < 0 ||
        (!g.heuristic && g.algo.splitk < 1)) {
      Die("accepted a GEMM entry out of range");
    }
    if (t->FindGemm(g.m, g.n, g.k, g.dtype) != &g) Die("accepted a repeated GEMM shape");
  }
  const std::string text2 = kvcc::runtime::TuningToJson(*t);
  auto back = kvcc::runtime::ParseTuning(text2, "again.json");
  if (!back.ok() || back->device != t->device || back->decode.size() != t->decode.size()) {
    Die("an accepted tuning file does not round-trip");
  }
  for (size_t i = 0; i < t->decode.size(); ++i) {
    const auto &a = t->decode[i], &b = back->decode[i];
    if (a.kernel != b.kernel || a.vec_bytes != b.vec_bytes || a.unroll != b.unroll ||
        a.threads != b.threads || a.buckets.size() != b.buckets.size()) {
      Die("an accepted entry does not round-trip");
    }
  }
  if (back->gemm.size() != t->gemm.size() || kvcc::runtime::TuningToJson(*back) != text2) {
    Die("accepted GEMM entries do not round-trip");
  }
  return 0;
}
