#include "runtime/cuda/gemv_choice.h"

#include "codegen/ops_kernels.h"

namespace kvcc::runtime {

bool GemvTakes(int64_t tokens, int64_t in, int64_t out) {
  return tokens >= 1 && tokens <= codegen::kGemvMaxTokens && in >= 8 && in % 8 == 0 &&
         out >= 1 && in <= (int64_t{1} << 30) && out <= (int64_t{1} << 30);
}

int GemvVariantFor(int64_t tokens, int64_t in, int64_t out) {
  if (!GemvTakes(tokens, in, out)) return -1;
  // Variants of codegen/ops_kernels.cc: 0 n1_s1_d2, 1 n1_s1_d3, 2 n1_s1_d4, 3 n1_s2_d2,
  // 4 n2_s1_d2, 5 n2_s1_d3, 6 n2_s2_d1.
  return tokens <= 8 ? 2 : 4;
}

}  // namespace kvcc::runtime
