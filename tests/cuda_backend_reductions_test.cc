// CudaBackend's reductions whose results alone leave the device, against the host oracle
// (Backend's defaults on the CPU backend), on fresh random inputs: TargetNll (perplexity's
// next-token log-likelihood) and ColumnRanges (calibration's per-channel K/V ranges), with the
// rows and values the oracle treats specially. Skips without a device.
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cpu_backend.h"
#include "runtime/cuda/cuda_backend.h"
#include "tests/fresh_kernel_cache.h"
#include "tests/cuda_fixture.h"
#include "tests/gpu_skip.h"
#include "tests/test_util.h"

namespace kvcc::runtime {
namespace {

const std::string& kKernelCacheDir = testing::FreshKernelCacheDir();

class CudaReductionsTest : public kvcc::testing::CudaBackendTest {
 protected:
  Tensor Random(int64_t rows, int64_t cols, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.5f, 3.0f);
    Tensor t = Tensor::HostZeros(ir::DType::kF32, {rows, cols});
    for (int64_t i = 0; i < t.NumElements(); ++i) t.data<float>()[i] = normal(rng);
    return t;
  }
  CpuBackend cpu_{1};
};

// 32000- and 7-token vocabularies, rows without a target (-1), and the refusals.
TEST_F(CudaReductionsTest, TargetNllMatchesTheHostLogSoftmax) {
  for (int64_t vocab : {int64_t{32000}, int64_t{7}}) {
    const int rows = 37;
    Tensor host = Random(rows, vocab, static_cast<uint32_t>(vocab));
    std::mt19937 rng(5);
    std::vector<int32_t> targets(rows);
    for (int r = 0; r < rows; ++r) {
      targets[r] = r % 5 == 4 ? -1 : static_cast<int32_t>(rng() % vocab);
    }
    KVCC_ASSERT_OK_AND_ASSIGN(dev, gpu_->FromHost(host));
    KVCC_ASSERT_OK_AND_ASSIGN(got, gpu_->TargetNll(dev, targets));
    KVCC_ASSERT_OK_AND_ASSIGN(want, cpu_.TargetNll(host, targets));
    ASSERT_EQ(got.size(), want.size());
    for (int r = 0; r < rows; ++r) {
      if (targets[r] < 0) {
        EXPECT_EQ(got[r], 0.0);
      } else {
        EXPECT_NEAR(got[r], want[r], 1e-9 * std::max(1.0, std::fabs(want[r]))) << "row " << r;
      }
    }
    targets[3] = static_cast<int32_t>(vocab);
    EXPECT_FALSE(gpu_->TargetNll(dev, targets).ok());
    targets.pop_back();
    EXPECT_FALSE(gpu_->TargetNll(dev, targets).ok());
  }
}

// Exact (min and max are exact operations): odd widths, a single row, NaN and Inf counted per
// column and kept out of the ranges, an all-NaN column reported as empty.
TEST_F(CudaReductionsTest, ColumnRangesEqualTheHostOnes) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{2048, 1024}, {1, 8}, {70, 33}}) {
    Tensor host = Random(rows, cols, static_cast<uint32_t>(rows * cols));
    if (cols == 33) {
      host.data<float>()[5 * cols + 2] = nan;
      host.data<float>()[9 * cols + 2] = -inf;
      for (int64_t r = 0; r < rows; ++r) host.data<float>()[r * cols + 7] = nan;
    }
    KVCC_ASSERT_OK_AND_ASSIGN(dev, gpu_->FromHost(host));
    KVCC_ASSERT_OK_AND_ASSIGN(got, gpu_->ColumnRanges(dev));
    KVCC_ASSERT_OK_AND_ASSIGN(want, cpu_.ColumnRanges(host));
    EXPECT_EQ(got.min, want.min);
    EXPECT_EQ(got.max, want.max);
    EXPECT_EQ(got.absmax, want.absmax);
    EXPECT_EQ(got.nonfinite, want.nonfinite);
    if (cols == 33) {
      EXPECT_EQ(got.nonfinite[2], 2);
      EXPECT_EQ(got.nonfinite[7], rows);
      EXPECT_GT(got.min[7], got.max[7]);
    }
  }
}

}  // namespace
}  // namespace kvcc::runtime
