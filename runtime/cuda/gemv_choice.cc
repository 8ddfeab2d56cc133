#include "runtime/cuda/gemv_choice.h"

#include <algorithm>

namespace kvcc::runtime {

bool GemvTakes(int64_t tokens, int64_t in, int64_t out) {
  return tokens >= 1 && tokens <= codegen::kGemvMaxTokens && in >= 8 && in % 8 == 0 &&
         out >= 1 && in <= (int64_t{1} << 30) && out <= (int64_t{1} << 30);
}

int GemvVariantFor(int64_t tokens, int64_t in, int64_t out) {
  if (!GemvTakes(tokens, in, out)) return -1;
  // Variants of codegen/ops_kernels.cc: 1 n1_s1_d4, 6 n2_s1_d2.
  return tokens <= 8 ? 1 : 6;
}

unsigned GemvGrid(const codegen::GemvVariant& v, int64_t out, int sms, int ctas_per_sm) {
  const int64_t groups = ((out + 15) / 16 + v.strips - 1) / v.strips;
  if (!v.persistent) return static_cast<unsigned>(groups);
  const int64_t slots = std::max<int64_t>(1, int64_t{sms} * std::max(1, ctas_per_sm));
  const int64_t rounds = (groups + slots - 1) / slots;
  return static_cast<unsigned>((groups + rounds - 1) / rounds);
}

}  // namespace kvcc::runtime
