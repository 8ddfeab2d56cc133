// runtime/cuda/cublaslt_gemm on a GPU: a stored (tuned) algorithm is rebuilt and used for its
// exact shape with the CPU product's results; one that does not check on the device, or one
// measured with another cuBLASLt version, falls back to the heuristic, which still computes.
#include "runtime/cuda/cublaslt_gemm.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "ir/half.h"
#include "runtime/cuda/cuda_memory.h"
#include "tests/gpu_skip.h"

namespace kvcc::runtime {
namespace {

constexpr int64_t kTokens = 8, kIn = 256, kOut = 384;

class CublasLtGemmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    auto ctx = CudaContext::Create(0);
    ASSERT_TRUE(ctx.ok()) << ctx.status();
    ctx_ = *ctx;
    std::mt19937 rng(9);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    Tensor x = Tensor::HostZeros(ir::DType::kF16, {kTokens, kIn});
    Tensor w = Tensor::HostZeros(ir::DType::kF16, {kOut, kIn});
    auto fill = [&](Tensor& t, std::vector<float>* vals) {
      auto* h = static_cast<uint16_t*>(t.raw());
      for (int64_t i = 0; i < t.NumElements(); ++i) {
        h[i] = ir::FloatToHalf(u(rng));
        vals->push_back(ir::HalfToFloat(h[i]));
      }
    };
    std::vector<float> xv, wv;
    fill(x, &xv);
    fill(w, &wv);
    want_.assign(kTokens * kOut, 0.f);
    for (int64_t t = 0; t < kTokens; ++t) {
      for (int64_t o = 0; o < kOut; ++o) {
        double acc = 0;
        for (int64_t i = 0; i < kIn; ++i) acc += double(xv[t * kIn + i]) * wv[o * kIn + i];
        want_[t * kOut + o] = static_cast<float>(acc);
      }
    }
    auto dx = CopyToDevice(ctx_, x);
    auto dw = CopyToDevice(ctx_, w);
    auto dy = AllocateDeviceTensor(ctx_, ir::DType::kF32, {kTokens, kOut}, true);
    ASSERT_TRUE(dx.ok() && dw.ok() && dy.ok());
    x_ = *dx;
    w_ = *dw;
    y_ = *dy;
  }

  // Runs the product through `gemm` and compares with the CPU's.
  void ExpectProduct(CublasLtGemm& gemm) {
    ASSERT_TRUE(gemm.Matmul(x_.raw(), w_.raw(), y_.data<float>(), kTokens, kIn, kOut,
                            ir::DType::kF16)
                    .ok());
    auto host = CopyToHost(ctx_, y_);
    ASSERT_TRUE(host.ok()) << host.status();
    const float* got = host->data<float>();
    double worst = 0;
    for (size_t i = 0; i < want_.size(); ++i) {
      worst = std::max(worst, std::abs(double(got[i]) - want_[i]) / (std::abs(want_[i]) + 1.0));
    }
    EXPECT_LT(worst, 1e-3);
  }

  std::shared_ptr<CudaContext> ctx_;
  Tensor x_, w_, y_;
  std::vector<float> want_;
};

TEST_F(CublasLtGemmTest, UsesAStoredAlgorithmForItsShape) {
  auto probe = CublasLtGemm::Create(ctx_);
  ASSERT_TRUE(probe.ok()) << probe.status();
  auto offered = (*probe)->Heuristics(kTokens, kIn, kOut, ir::DType::kF16, 8);
  ASSERT_TRUE(offered.ok()) << offered.status();
  ASSERT_FALSE(offered->empty());
  // The last offered algorithm (another than the heuristic's first where there are several).
  const GemmAlgo chosen = offered->back().config;
  ASSERT_TRUE((*probe)->Rebuild(chosen, kTokens, kIn, kOut, ir::DType::kF16).ok());

  auto gemm = CublasLtGemm::Create(ctx_);
  ASSERT_TRUE(gemm.ok());
  GemmTuning t;
  t.m = kTokens;
  t.n = kOut;
  t.k = kIn;
  t.heuristic = false;
  t.algo = chosen;
  (*gemm)->SetTuning({t}, CublasLtGemm::LibraryVersion());
  EXPECT_TRUE(*(*gemm)->UsesStoredAlgo(kTokens, kIn, kOut, ir::DType::kF16));
  // Only the exact shape: another token count asks the heuristic.
  EXPECT_FALSE(*(*gemm)->UsesStoredAlgo(kTokens + 1, kIn, kOut, ir::DType::kF16));
  ExpectProduct(**gemm);
}

TEST_F(CublasLtGemmTest, FallsBackWhenTheStoredAlgorithmCannotRunHere) {
  GemmTuning t;
  t.m = kTokens;
  t.n = kOut;
  t.k = kIn;
  t.heuristic = false;
  t.algo.id = 1 << 20;  // no such algorithm
  t.algo.tile = 60000;
  auto gemm = CublasLtGemm::Create(ctx_);
  ASSERT_TRUE(gemm.ok());
  (*gemm)->SetTuning({t}, CublasLtGemm::LibraryVersion());
  EXPECT_FALSE(*(*gemm)->UsesStoredAlgo(kTokens, kIn, kOut, ir::DType::kF16));
  ExpectProduct(**gemm);
}

TEST_F(CublasLtGemmTest, IgnoresAlgorithmsOfAnotherLibraryVersion) {
  auto probe = CublasLtGemm::Create(ctx_);
  ASSERT_TRUE(probe.ok());
  auto offered = (*probe)->Heuristics(kTokens, kIn, kOut, ir::DType::kF16, 1);
  ASSERT_TRUE(offered.ok() && !offered->empty());
  GemmTuning t;
  t.m = kTokens;
  t.n = kOut;
  t.k = kIn;
  t.heuristic = false;
  t.algo = (*offered)[0].config;
  auto gemm = CublasLtGemm::Create(ctx_);
  ASSERT_TRUE(gemm.ok());
  (*gemm)->SetTuning({t}, CublasLtGemm::LibraryVersion() + 1);
  EXPECT_FALSE(*(*gemm)->UsesStoredAlgo(kTokens, kIn, kOut, ir::DType::kF16));
  ExpectProduct(**gemm);
}

}  // namespace
}  // namespace kvcc::runtime
