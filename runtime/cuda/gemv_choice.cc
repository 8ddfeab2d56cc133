#include "runtime/cuda/gemv_choice.h"

#include <string>

namespace kvcc::runtime {
namespace {

int IndexOf(const std::string& suffix) {
  const auto& variants = codegen::GemvVariants();
  for (int i = 0; i < static_cast<int>(variants.size()); ++i) {
    if (variants[i].Suffix() == suffix) return i;
  }
  return -1;
}

}  // namespace

bool GemvVariantTakes(const codegen::GemvVariant& v, int64_t tokens, int64_t in, int64_t out,
                      bool aligned16) {
  if (tokens < 1 || tokens > v.max_tokens() || in < 1 || out < 1 || in > (int64_t{1} << 30) ||
      out > (int64_t{1} << 30)) {
    return false;
  }
  return v.small || (in % 8 == 0 && aligned16);
}

int GemvVariantFor(int64_t tokens, int64_t in, int64_t out, bool aligned16) {
  static const int n1_d2 = IndexOf("n1_s1_d2"), n1_d3 = IndexOf("n1_s1_d3"),
                   n2_d3 = IndexOf("n2_s1_d3"), small = IndexOf("small");
  const auto& variants = codegen::GemvVariants();
  if (tokens < 1 || tokens > codegen::kGemvMaxTokens) return -1;
  const int wide = tokens <= 8 ? n1_d3 : n2_d3;
  if (in * out <= kGemvTinyElements) {
    return GemvVariantTakes(variants[wide], tokens, in, out, aligned16) ? wide : small;
  }
  if (!GemvVariantTakes(variants[wide], tokens, in, out, aligned16)) return -1;
  // The H200 sweep (docs/performance.md, "Decode GEMV"), weights read from memory: up to 8
  // tokens the GEMV beat cuBLASLt at 4096 -> 12288 (1-6%), 4096 -> 4096 (1.2x) and
  // 11008 -> 4096 (4-6%), with 2 chunks in flight per lane above 64 MiB of weight and 3 below;
  // cuBLASLt's kernels for 4096 -> 22016 and the 4096 -> 32000 LM head (89-90% of the read
  // bandwidth) were faster. At 9-16 tokens the GEMV won only on the 32 MiB 4096 -> 4096
  // (1.12x).
  const int64_t bytes = 2 * in * out;
  if (tokens <= 8) {
    if (out > 16384) return -1;
    return bytes > (int64_t{64} << 20) ? n1_d2 : n1_d3;
  }
  return bytes <= (int64_t{48} << 20) ? n2_d3 : -1;
}

unsigned GemvGrid(const codegen::GemvVariant& v, int64_t out) {
  if (v.small) return static_cast<unsigned>((out + 7) / 8);  // a warp per row
  return static_cast<unsigned>(((out + 15) / 16 + v.strips - 1) / v.strips);
}

}  // namespace kvcc::runtime
