#include "runtime/half_convert.h"

#include "ir/half.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define KVCC_HAVE_F16C_PATH 1
#endif

namespace kvcc::runtime {
namespace {

#if KVCC_HAVE_F16C_PATH
__attribute__((target("avx,f16c"))) void ConvertF16c(const uint16_t* in, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) out[i] = ir::HalfToFloat(in[i]);
}

bool HasF16c() {
  static const bool has = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  return has;
}
#endif

}  // namespace

void ConvertHalfRow(const uint16_t* in, float* out, int64_t n) {
#if KVCC_HAVE_F16C_PATH
  if (HasF16c()) {
    ConvertF16c(in, out, n);
    return;
  }
#endif
  ir::HalfToFloatRow(in, out, n);
}

}  // namespace kvcc::runtime
