// Sampling on the GPU (codegen/ops_sample.cuh through CudaBackend::SampleRows) against the CPU
// sampler, the oracle: the same logits and draws pick the same ids for greedy, temperature,
// top-k, top-p and the repetition penalty, mixed in one batch; a NaN logit is an error naming
// it; generation on stories260K picks the same tokens whether the device or the host samples,
// and greedy generation on the GPU equals the CPU backend's for 64 tokens. Skips without a
// device.
#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_context.h"
#include "tests/cuda_fixture.h"
#include "tests/gpu_skip.h"
#include "runtime/engine.h"
#include "runtime/generator.h"
#include "runtime/sampler.h"
#include "tests/fresh_kernel_cache.h"
#include "tests/test_util.h"

namespace kvcc::runtime {
namespace {

using kvcc::testing::SourcePath;

// Every backend of this process compiles into its own kernel cache, never a warm one.
const std::string& kKernelCacheDir = testing::FreshKernelCacheDir();

SamplingParams Params(double temperature, int top_k, double top_p, double penalty) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.repetition_penalty = penalty;
  return p;
}

class CudaSamplingTest : public kvcc::testing::CudaBackendTest {
 protected:

  // Rows of N(0, 3) logits, each sampled by `params[r % size]` with its own draw and history,
  // on the GPU and by Sampler::Pick. Greedy rows get an exact tie (the lower id must win);
  // sampled rows get none, since top-p may cut a tie group differently (ops_sample.cuh).
  void Compare(int64_t vocab, int rows, const std::vector<SamplingParams>& params,
               uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    Tensor host = Tensor::HostZeros(ir::DType::kF32, {rows, vocab});
    for (int64_t i = 0; i < host.NumElements(); ++i) host.data<float>()[i] = normal(rng);
    std::vector<std::vector<int32_t>> histories(rows);
    std::vector<SampleRow> request(rows);
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    for (int r = 0; r < rows; ++r) {
      float* row = host.data<float>() + r * vocab;
      const SamplingParams& p = params[r % params.size()];
      if (p.greedy()) {
        const int64_t top = std::max_element(row, row + vocab) - row;
        row[vocab - 1] = row[top];
        row[0] = row[top];
      }
      for (int h = 0; h < 20; ++h) histories[r].push_back(static_cast<int32_t>(rng() % vocab));
      histories[r].push_back(static_cast<int32_t>(std::max_element(row, row + vocab) - row));
      request[r] = SampleRow{p, uniform(rng), &histories[r]};
    }
    auto dev = gpu_->FromHost(host);
    ASSERT_TRUE(dev.ok()) << dev.status();
    auto got = gpu_->SampleRows(*dev, request);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->size(), static_cast<size_t>(rows));
    for (int r = 0; r < rows; ++r) {
      auto want = Sampler::Pick(request[r].params, host.data<float>() + r * vocab, vocab,
                                histories[r], request[r].uniform);
      ASSERT_TRUE(want.ok()) << want.status();
      const SamplingParams& p = request[r].params;
      EXPECT_EQ((*got)[r], *want) << "vocab " << vocab << " row " << r << ": temperature "
                                  << p.temperature << " top-k " << p.top_k << " top-p "
                                  << p.top_p << " penalty " << p.repetition_penalty << " u "
                                  << request[r].uniform;
    }
  }

};

TEST_F(CudaSamplingTest, EveryModeMatchesTheCpuSampler) {
  const std::vector<SamplingParams> modes = {
      Params(0, 0, 1, 1),      Params(0, 0, 1, 1.3),   Params(1, 0, 1, 1),
      Params(0.7, 0, 1, 1),    Params(1, 40, 1, 1),    Params(1, 1, 1, 1),
      Params(0.9, 0, 0.9, 1),  Params(1, 0, 0.05, 1),  Params(0.8, 50, 0.8, 1.3),
      Params(1.5, 200, 0.95, 0.7)};
  for (int64_t vocab : {37, 1000, 32000, 151936}) {
    for (uint32_t seed : {1u, 2u, 3u}) Compare(vocab, 20, modes, seed);
  }
}

TEST_F(CudaSamplingTest, ANanLogitIsAnError) {
  Tensor host = Tensor::HostZeros(ir::DType::kF32, {2, 64});
  host.data<float>()[64 + 9] = std::nanf("");
  auto dev = gpu_->FromHost(host);
  ASSERT_TRUE(dev.ok());
  const std::vector<SampleRow> rows(2, SampleRow{Params(1, 0, 1, 1), 0.5, nullptr});
  auto got = gpu_->SampleRows(*dev, rows);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("logit 9 is NaN"), std::string::npos) << got.status();
}

std::vector<int32_t> Generated(Engine& engine, const SamplingParams& p, bool host_logits, int n) {
  Sampler sampler = *Sampler::Create(p);
  GenerateOptions o;
  o.max_new_tokens = n;
  if (host_logits) o.on_logits = [](const float*, int64_t) {};
  std::vector<int32_t> history, out;
  auto s = engine.CreateSession();
  EXPECT_TRUE(s.ok());
  auto r = Generate(engine, *s, {1, 403, 407, 261, 378}, sampler, o, &history,
                    [&](int32_t id) {
                      out.push_back(id);
                      return absl::OkStatus();
                    });
  EXPECT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(engine.CloseSession(*s).ok());
  return out;
}

TEST(CudaGenerateTest, DeviceSamplingEqualsHostSamplingOfTheSameLogits) {
  SKIP_WITHOUT_GPU();
  auto gpu = testing::Stories260KEngine("cuda");
  ASSERT_NE(gpu, nullptr);
  SamplingParams p = Params(0.8, 40, 0.9, 1.2);
  for (uint64_t seed : {3u, 4u}) {
    p.seed = seed;
    const std::vector<int32_t> device = Generated(*gpu, p, false, 48);
    EXPECT_EQ(device.size(), 48u);
    EXPECT_EQ(device, Generated(*gpu, p, true, 48)) << "seed " << seed;
  }
}

TEST(CudaGenerateTest, Stories260KGreedyEqualsTheCpuFor64Tokens) {
  SKIP_WITHOUT_GPU();
  auto cpu = testing::Stories260KEngine("cpu");
  auto gpu = testing::Stories260KEngine("cuda");
  ASSERT_TRUE(cpu && gpu);
  const std::vector<int32_t> want = Generated(*cpu, SamplingParams(), false, 64);
  EXPECT_EQ(want.size(), 64u);
  EXPECT_EQ(Generated(*gpu, SamplingParams(), false, 64), want);
}

}  // namespace
}  // namespace kvcc::runtime
