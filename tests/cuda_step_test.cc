// The CUDA decode step as the engine runs it: a repeated step allocates nothing (every op
// result and upload comes from the backend's block cache), and a step never reads blocks that
// are not its sessions' own: every other block of the pool (another session's, free ones) is
// filled with NaN and the step's logits stay finite and unchanged. Skips without a device.
#include <algorithm>
#include <cmath>
#include <memory>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_context.h"
#include "tests/gpu_skip.h"
#include "runtime/engine.h"
#include "runtime/sampler.h"
#include "tests/fresh_kernel_cache.h"
#include "tests/kv_poison.h"
#include "tests/test_util.h"

namespace kvcc::runtime {
namespace {

using kvcc::testing::SourcePath;

const std::string& kKernelCacheDir = testing::FreshKernelCacheDir();

std::vector<int32_t> Prompt(int n, int salt) {
  std::vector<int32_t> ids(n);
  for (int i = 0; i < n; ++i) ids[i] = 1 + (i * 37 + salt * 11) % 500;
  return ids;
}

TEST(CudaStepTest, ARepeatedDecodeStepAllocatesNothing) {
  SKIP_WITHOUT_GPU();
  auto gpu = testing::Stories260KEngine("cuda");
  ASSERT_NE(gpu, nullptr);
  auto* backend = dynamic_cast<CudaBackend*>(&gpu->backend());
  ASSERT_NE(backend, nullptr);
  std::vector<std::pair<int64_t, int32_t>> step;
  std::vector<std::vector<int32_t>> histories(3);
  for (int i = 0; i < 3; ++i) {
    auto s = gpu->CreateSession();
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(gpu->Prefill(*s, {1, 403, 407}).ok());
    step.push_back({*s, 261});
  }
  SamplingParams p;
  p.temperature = 0.8;
  p.top_k = 40;
  p.top_p = 0.9;
  p.repetition_penalty = 1.2;
  Sampler sampler = *Sampler::Create(p);
  auto decode = [&]() {
    std::vector<SampleRow> rows;
    for (const auto& h : histories) rows.push_back(sampler.NextRow(h));
    auto ids = gpu->DecodeSample(step, rows);
    ASSERT_TRUE(ids.ok()) << ids.status();
    for (size_t i = 0; i < step.size(); ++i) {
      step[i].second = (*ids)[i];
      histories[i].push_back((*ids)[i]);
    }
  };
  decode();
  decode();
  const int64_t misses = backend->block_stats().misses;
  for (int i = 0; i < 4; ++i) decode();
  EXPECT_EQ(backend->block_stats().misses, misses);
  EXPECT_GT(backend->block_stats().hits, 0);
}

TEST(CudaStepTest, BlocksOfOtherSessionsAndFreeBlocksFilledWithNanAreNeverRead) {
  SKIP_WITHOUT_GPU();
  auto gpu = testing::Stories260KEngine("cuda");
  ASSERT_NE(gpu, nullptr);
  // Interleaved tables: a, b and c each take blocks in turn as they grow.
  std::vector<int64_t> s;
  for (int i = 0; i < 3; ++i) {
    auto id = gpu->CreateSession();
    ASSERT_TRUE(id.ok());
    s.push_back(*id);
  }
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(gpu->Prefill(s[i], Prompt(10 + 3 * i, round * 3 + i)).ok());
    }
  }
  const std::vector<std::pair<int64_t, int32_t>> step = {{s[0], 261}, {s[2], 378}};
  auto before = gpu->Decode(step);
  ASSERT_TRUE(before.ok()) << before.status();
  for (const auto& [session, token] : step) {
    ASSERT_TRUE(gpu->TruncateSession(session, gpu->SessionLength(session) - 1).ok());
  }
  // NaN (0xffff in f16) in every block a and c do not own, in every layer's K and V.
  auto poisoned = testing::PoisonBlocksExcept(*gpu, {s[0], s[2]});
  ASSERT_TRUE(poisoned.ok()) << poisoned.status();
  EXPECT_GT(*poisoned, 3);
  auto after = gpu->Decode(step);
  ASSERT_TRUE(after.ok()) << after.status();
  for (size_t i = 0; i < step.size(); ++i) {
    const std::vector<float>& want = (*before)[i];
    const std::vector<float>& got = (*after)[i];
    ASSERT_EQ(got.size(), want.size());
    double diff = 0, scale = 0;
    for (size_t j = 0; j < got.size(); ++j) {
      ASSERT_TRUE(std::isfinite(got[j])) << "session " << step[i].first << " logit " << j;
      diff = std::max(diff, double(std::fabs(got[j] - want[j])));
      scale = std::max(scale, double(std::fabs(want[j])));
    }
    EXPECT_LE(diff, 1e-3 * scale) << "session " << step[i].first;
  }
}

}  // namespace
}  // namespace kvcc::runtime
