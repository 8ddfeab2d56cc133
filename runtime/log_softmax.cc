#include "runtime/log_softmax.h"

#include <algorithm>
#include <cmath>

namespace kvcc::runtime {

double LogSumExp(const float* row, int64_t n) {
  const double m = *std::max_element(row, row + n);
  double z = 0;
  for (int64_t i = 0; i < n; ++i) z += std::exp(double{row[i]} - m);
  return std::log(z) + m;
}

}  // namespace kvcc::runtime
