#include "tests/cuda_fixture.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace kvcc::testing {

std::vector<float> Floats(const runtime::Tensor& host) {
  return std::vector<float>(host.data<float>(), host.data<float>() + host.NumElements());
}

double ScaledError(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, scale = 1e-30;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if (!std::isfinite(a[i])) return std::numeric_limits<double>::infinity();
    diff = std::max(diff, double(std::fabs(a[i] - b[i])));
    scale = std::max(scale, double(std::fabs(b[i])));
  }
  return diff / scale;
}

}  // namespace kvcc::testing
